"""The oracle's HTTP contract: wire models (`models`), the route table the app is built from (`routes`), the
OpenAPI 3.1 document generated from both (`openapi`) and its offline docs page (`docs`)."""
