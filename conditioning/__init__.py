"""Conditioning: raw vendor files become validated, versioned, standard CSV.

Pure data code (pyarrow, numpy, PyYAML, openpyxl; no Azure SDKs). The pieces:

    contracts   the standard table of every source (docs/data-contracts.md)
    mapping     declarative vendor layouts (mappings/*.yaml) -> standard columns
    readers     CSV (any delimiter/encoding, gzip), JSON Lines, Parquet, Excel -> text batches
    normalize   vectorised typing and validation of one batch
    engine      streaming: batches -> staged parts, rejects, manifest; duplicate keys
    publish     output layout and atomic publication to a directory
    service     one raw blob in the data lake -> published outputs, registry, signal
    synthetic   deterministic synthetic raw drops with controllable defects
    __main__    the command line (python -m conditioning SOURCE INPUT --out DIR)

Importing this package is cheap; the modules import pyarrow themselves.
"""
