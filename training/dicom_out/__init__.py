"""DICOM results: Structured Report, secondary capture, UIDs, the source dataset and the export folder."""
