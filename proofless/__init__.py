"""Generated from protos/proofless/ by `make proto`; never edit by hand."""
