"use strict";
// Sign-in: the token goes as JSON (a cross-site form cannot send that) and comes back as an
// HttpOnly session cookie; the page never stores the token itself.
(function () {
  const form = document.getElementById("login");
  const input = document.getElementById("token");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const r = await fetch("/dashboard/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token: input.value }),
      });
      if (r.ok) {
        input.value = "";
        window.location.assign("/dashboard");
        return;
      }
      let message = "Sign-in failed (" + r.status + ").";
      if (r.status === 401) message = "Wrong admin token.";
      if (r.status === 429) message = "Too many failed attempts; try again in a few minutes.";
      error.textContent = message;
      error.hidden = false;
    } catch (err) {
      error.textContent = "The server cannot be reached.";
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
})();
