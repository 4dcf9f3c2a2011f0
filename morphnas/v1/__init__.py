"""Generated from protos/morphnas/v1 by scripts/gen_protos.py. Do not edit."""
