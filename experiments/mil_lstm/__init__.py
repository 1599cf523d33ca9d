"""MIL experiments of thesis chapter 7 (LSTM-based MIL on MNIST-bags) and the Table 7.1 runner."""
