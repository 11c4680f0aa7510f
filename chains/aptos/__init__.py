"""The Aptos family: the protocol's Move package (contracts/aptos) read by scanning the fullnode REST API's
transactions by version (module events carry no event handle), written with aptos-sdk entry-function transactions.
See README "Aptos"."""
