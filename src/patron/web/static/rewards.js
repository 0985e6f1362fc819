// The reward form: show only the fields the chosen kind uses. Without this script every field is
// shown and sent, and the service says which one does not apply.
"use strict";
(function () {
  var form = document.getElementById("reward-form");
  var kind = form && form.querySelector("select[name=kind]");
  if (!kind) {
    return;
  }
  function sync() {
    form.querySelectorAll("[data-kinds]").forEach(function (element) {
      var used = element.getAttribute("data-kinds").split(" ").indexOf(kind.value) >= 0;
      element.hidden = !used;
      // A hidden field is not sent: a value typed for another kind must not refuse the form.
      element.querySelectorAll("input, select, textarea").forEach(function (input) {
        input.disabled = !used;
      });
    });
  }
  kind.addEventListener("change", sync);
  sync();
})();
