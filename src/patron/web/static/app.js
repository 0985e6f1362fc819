// Small progressive enhancement for every screen; the pages work without it.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // One submission per form: a double click must not send it twice.
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  window.setTimeout(function () { form.dataset.sent = ""; }, 5000);
});
