package dev.exeunt.model.generate;

/** One generated token: its id, the 1-based layer of the exit that produced it (n_layers for the final head), and that head's probability of it. */
public record GeneratedToken(int token, int exitLayer, float probability) {}
