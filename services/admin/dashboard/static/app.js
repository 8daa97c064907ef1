// The dashboard's own script (no inline scripts: the Content-Security-Policy allows only files of this origin).
// - htmx requests carry the session's CSRF token, read from the page's <meta name="csrf-token">;
// - [data-copy="<id>"] buttons copy that element's value or text (the clipboard API; else it is selected);
// - [data-select-all="<name>"] checkboxes tick every checkbox of that name in their form.
"use strict";

document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

function said(button, text) {
  const before = button.dataset.label || button.textContent;
  button.dataset.label = before;
  button.textContent = text;
  window.setTimeout(() => { button.textContent = before; }, 2000);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) {
    return;
  }
  const source = document.getElementById(button.dataset.copy);
  if (!source) {
    return;
  }
  const text = "value" in source ? source.value : source.textContent.trim();
  const select = () => {
    if (typeof source.select === "function") {
      source.select();
    } else {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(() => said(button, "Copied"), () => { select(); said(button, "Press Ctrl+C"); });
  } else {
    select();
    said(button, "Press Ctrl+C");
  }
});

document.addEventListener("change", (event) => {
  const all = event.target.closest("[data-select-all]");
  if (!all || !all.form) {
    return;
  }
  for (const box of all.form.querySelectorAll(`input[type="checkbox"][name="${all.dataset.selectAll}"]`)) {
    box.checked = all.checked;
  }
});
