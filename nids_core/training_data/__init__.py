"""What the model trains on: the reference corpus, analyst labels, the data directory and the training set."""
