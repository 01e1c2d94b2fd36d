"""From a file to a grey image: file discovery, Pillow and DICOM decoding, header rules, the decode guard, DICOMDIR, study information, the one resize."""
