"""Evaluation: re-identification metrics (`metrics`), the paper's recognition network
(`recognition`) and the KGBD benchmark with its controls (`kgbd_benchmark`)."""
