// API docs (/docs): Swagger UI, vendored in static/vendor/swagger-ui (make vendor-swagger-ui), over
// the server's own /openapi.json. No CDN and no inline script: everything comes from this app.
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,  // #/tag/operation in the URL: a link to one endpoint can be shared
    docExpansion: "list",
    defaultModelsExpandDepth: 0,  // the schemas are long; each operation shows its own
    tryItOutEnabled: false,
    validatorUrl: null,  // never send the document to swagger.io's online validator
  });
})();
