// community-sync review desk: the little the pages need (no inline script under the CSP).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Filters apply on change.
  document.querySelectorAll("select.autosubmit").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  // A split needs at least one selected record.
  document.querySelectorAll("section.split form").forEach(function (form) {
    var button = form.querySelector(".split-button");
    var boxes = form.querySelectorAll("input[type=checkbox]");
    var sync = function () {
      button.disabled = !Array.prototype.some.call(boxes, function (b) { return b.checked; });
    };
    boxes.forEach(function (b) { b.addEventListener("change", sync); });
    sync();
  });
  // One submission per form: a double click does not decide twice.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (form.dataset.sent) { e.preventDefault(); return; }
      form.dataset.sent = "1";
      setTimeout(function () {
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
});
