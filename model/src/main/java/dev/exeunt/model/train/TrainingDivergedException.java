package dev.exeunt.model.train;

/** Training produced a NaN or infinite loss; the last good checkpoint on disk is left as it was. */
public class TrainingDivergedException extends RuntimeException {
    public TrainingDivergedException(String message) {
        super(message);
    }
}
