"""A small DICOM node built on pynetdicom (no hand-written DICOM networking):

* ``config``    - this node's AE title/port, peers, store folder (TOML file or the app's settings)
* ``store``     - the local store: received images, results waiting to be sent, sent results
* ``scp``       - Storage SCP (C-ECHO, C-STORE of CR/DX radiographs) feeding the store
* ``scu``       - C-ECHO "Test connection", C-FIND/C-GET from a PACS, C-STORE of results
* ``processor`` - store -> gate + classifier -> SR/SC in the outbox (restart-safe)
* ``sender``    - outbox -> results destination, with retry; nothing is dropped
* ``service``   - the headless loop behind ``xray-node`` (training.cli.node)

See docs/DICOM_NODE.md.  Qt-free like the rest of ``training``."""
