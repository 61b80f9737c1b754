// shopkeep's admin console: ask before a form marked data-confirm acts (a cancel refunds the
// customer; a new token cuts the old one off). Without JavaScript the form acts as it is.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
}, true);
