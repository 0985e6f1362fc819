"""QR codes and Code 128 barcodes of coupon codes, as SVG (no image library needed).

Used by the API (`/v1/coupons/{code}/qr.svg`, `/barcode.svg`) and meant for the web pages too: the
portal's wallet and the till screen embed the same SVG. Both carry the code without dashes, which
the till accepts as typed by a scanner; the barcode prints the grouped form under the bars.
"""

from __future__ import annotations

import io

import qrcode  # type: ignore[import-untyped]
from barcode import Code128  # type: ignore[import-untyped]
from barcode.writer import SVGWriter  # type: ignore[import-untyped]
from qrcode.image.svg import SvgPathFillImage  # type: ignore[import-untyped]

SVG_MEDIA_TYPE = "image/svg+xml"


def qr_svg(data: str) -> bytes:
    """A QR code (error correction M, white background) as a standalone SVG document."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    qr.add_data(data)
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image(image_factory=SvgPathFillImage).save(out)
    return out.getvalue()


def barcode_svg(data: str, text: str | None = None) -> bytes:
    """A Code 128 barcode as a standalone SVG document, with `text` (or the data) printed under it."""
    writer = SVGWriter()
    writer.with_doctype = False  # embeddable in an HTML page as it is
    options = {"module_width": 0.3, "module_height": 15.0, "quiet_zone": 6.5, "font_size": 10, "text_distance": 5.0}
    rendered: bytes = Code128(data, writer=writer).render(options, text=text if text is not None else data)
    return rendered
