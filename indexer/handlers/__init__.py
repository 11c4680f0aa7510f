"""One module per contract; each function handles one "Contract:Event"."""
