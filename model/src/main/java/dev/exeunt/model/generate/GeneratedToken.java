package dev.exeunt.model.generate;

/**
 * One generated token: its id, the 1-based layer of the exit that produced it (n_layers for the final
 * head), and that head's probability of it.
 *
 * @param exitMaxProbs only when {@link GenerationConfig#exitProbs} asked (else null): the top probability
 *                     of each of the model's exits (in config order), then of the final head, as the token
 *                     reached them; NaN for a head it did not reach (it exited before)
 */
public record GeneratedToken(int token, int exitLayer, float probability, float[] exitMaxProbs) {
    public GeneratedToken(int token, int exitLayer, float probability) {
        this(token, exitLayer, probability, null);
    }
}
