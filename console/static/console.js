// Keygate console: the copy button of a secret. Everything else works
// without JavaScript.
"use strict";
document.addEventListener("click", function (ev) {
  var b = ev.target.closest("button[data-copy]");
  if (!b) return;
  var input = document.getElementById(b.getAttribute("data-copy"));
  var status = document.getElementById("copied");
  function done(ok) {
    if (status) status.textContent = ok ? "Copied to the clipboard." : "Select the secret and copy it (Ctrl+C).";
  }
  input.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(false); });
  } else {
    try { done(document.execCommand("copy")); } catch (e) { done(false); }
  }
});
