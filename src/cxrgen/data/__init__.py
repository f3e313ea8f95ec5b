"""Data ingestion: DICOM / image-folder decoding, the tensor store, patient-level splits."""
