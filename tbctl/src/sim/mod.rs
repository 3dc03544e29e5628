//! serve-sim: a simulated inference server that logs its own ground truth.
