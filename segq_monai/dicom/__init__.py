"""DICOM in and out (docs/dicom.md), the ``dicom`` extra (``highdicom``, ``dicomweb-client``; ``pydicom`` under them).

* :mod:`segq_monai.dicom.series`: a series folder read and checked as one volume, and a NIfTI volume written as a
  derived series (the Colin27 test series);
* :mod:`segq_monai.dicom.codes`: the coded concepts and the private coding scheme ``99SEGQ``;
* :mod:`segq_monai.dicom.objects`: a case's DICOM SEG and TID 1500 structured report;
* :mod:`segq_monai.dicom.outputs`: those objects from a deployment's outputs, written whole, and read back;
* :mod:`segq_monai.dicom.pacs`: a PACS over DICOMweb: find, pull, store.

Nothing is imported here, so that the package runs without the extra; import the modules themselves.
"""
