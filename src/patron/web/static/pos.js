// The till screen: a card reader that types fast, lines added on demand, printing the card.
"use strict";
(function () {
  // A keyboard-wedge reader types a swipe as keystrokes ending with Enter, sometimes an Enter per
  // track. While the field holds track data, Enter waits for the keys to stop before it submits.
  var TRACK = /^[%;жЖ；]/;
  var QUIET_MS = 150;
  document.querySelectorAll("input[data-swipe]").forEach(function (input) {
    var timer = null;
    input.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || !TRACK.test(input.value)) {
        if (timer && event.key !== "Enter") { window.clearTimeout(timer); timer = null; }
        return;
      }
      event.preventDefault();
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(function () { input.form.requestSubmit(); }, QUIET_MS);
    });
  });

  document.querySelectorAll("[data-add-line]").forEach(function (button) {
    button.addEventListener("click", function () {
      var body = document.getElementById(button.getAttribute("data-add-line"));
      var last = body && body.lastElementChild;
      if (!last) { return; }
      var row = last.cloneNode(true);
      row.querySelectorAll("input").forEach(function (input) { input.value = input.name === "qty" ? "1" : ""; });
      body.appendChild(row);
      var first = row.querySelector("input");
      if (first) { first.focus(); }
    });
  });

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();
