"""Official TF DeepLab checkpoints to Gluon: stage 1 reads (TensorFlow), stage 2 maps (mxnet only)."""
