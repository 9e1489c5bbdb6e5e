package dev.exeunt.model.generate;

/**
 * One stretch of a pipeline stage's work in pipeline-based early exit ({@link EeMethod#PIPELINE}): decode
 * step {@code step}'s rows through the stage, from {@code startNanos} to {@code endNanos}
 * ({@link System#nanoTime()}). {@code fillOnly}: every row had its token chosen on an earlier stage, so
 * this work only fills caches and is off the path to the next token. What a benchmark measures overlap with.
 */
public record StageWork(int stage, int step, boolean fillOnly, long startNanos, long endNanos) {}
