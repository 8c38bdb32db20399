// Progressive enhancement only: every page works without this file.
// Forms with data-confirm ask before they submit (e.g. deleting an agent).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm;
  if (question !== undefined && !window.confirm(question)) event.preventDefault();
});
