// The list button in the page header opens the table-of-contents drawer (wide-code.css moves the table of
// contents there below 1680 px). The theme wires only the top bar's button, which scrolls out of view.
document.addEventListener("DOMContentLoaded", () => {
  const header = document.querySelector(".bd-header-article button.secondary-toggle");
  const wired = document.querySelector(".bd-header button.secondary-toggle");
  if (header && wired) header.addEventListener("click", () => wired.click());
});
