// "Try it" forms of the API reference: send the request from the browser with the reader's key.
(function () {
  "use strict";
  const keyInput = document.getElementById("api-key");
  const storedKey = sessionStorage.getItem("connex-api-key");
  if (keyInput && storedKey) keyInput.value = storedKey;
  if (keyInput) {
    keyInput.addEventListener("change", () => sessionStorage.setItem("connex-api-key", keyInput.value.trim()));
  }

  function buildRequest(form) {
    let path = form.dataset.path;
    const query = new URLSearchParams();
    let body = null;
    for (const field of form.querySelectorAll("[data-in]")) {
      const value = field.value.trim();
      if (field.dataset.in === "body") {
        body = value;
      } else if (value !== "" && field.dataset.in === "path") {
        path = path.replace("{" + field.dataset.name + "}", encodeURIComponent(value));
      } else if (value !== "" && field.dataset.in === "query") {
        query.append(field.dataset.name, value);
      }
    }
    const queryText = query.toString();
    return { url: path + (queryText ? "?" + queryText : ""), body: body };
  }

  async function send(event) {
    event.preventDefault();
    const form = event.target;
    const output = form.querySelector(".response");
    const request = buildRequest(form);
    const headers = { Authorization: "Bearer " + (keyInput ? keyInput.value.trim() : "") };
    if (request.body !== null) headers["Content-Type"] = "application/json";
    output.textContent = "Sending " + form.dataset.method + " " + request.url + " ...";
    try {
      const response = await fetch(request.url, { method: form.dataset.method, headers: headers, body: request.body });
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (error) { /* not JSON: show as is */ }
      output.textContent = response.status + " " + response.statusText + "\n" +
        "x-request-id: " + response.headers.get("x-request-id") + "\n\n" + shown;
    } catch (error) {
      output.textContent = "The request failed: " + error;
    }
  }

  for (const form of document.querySelectorAll("form[data-method]")) {
    form.addEventListener("submit", send);
  }
})();
