"""The segq MONAI Label app (``main.py``): ``monailabel start_server --app segq_monai/monailabel/app ...``."""
