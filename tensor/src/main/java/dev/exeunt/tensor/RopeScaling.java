package dev.exeunt.tensor;

/**
 * How a model stretches its rotary frequencies past the context it was trained on (Hugging Face's
 * {@code rope_scaling}), as inverse frequencies computed once per table:
 * <ul>
 *   <li>{@link Type#NONE}: {@code theta^(-2i/d)}.</li>
 *   <li>{@link Type#LINEAR}: every frequency divided by {@code factor} (positions divided by it).</li>
 *   <li>{@link Type#LLAMA3} (Llama 3.1 / 3.2): wavelengths longer than
 *       {@code originalMaxPositions / lowFreqFactor} divided by {@code factor}, shorter than
 *       {@code originalMaxPositions / highFreqFactor} kept, and the band between interpolated smoothly,
 *       as transformers' {@code _compute_llama3_parameters} does.</li>
 *   <li>{@link Type#FACTORS}: each frequency divided by its own factor, as a GGUF file's
 *       {@code rope_freqs.weight} gives them (llama.cpp's converter writes Llama 3's scaling that way).</li>
 * </ul>
 * Neither changes the attention scale (their attention factor is 1).
 */
public record RopeScaling(Type type, double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions, double[] factors) {
    public enum Type { NONE, LINEAR, LLAMA3, FACTORS }

    public static final RopeScaling NONE = new RopeScaling(Type.NONE, 1, 0, 0, 0, null);

    public RopeScaling(Type type, double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {
        this(type, factor, lowFreqFactor, highFreqFactor, originalMaxPositions, null);
    }

    public RopeScaling {
        if (type == null) throw new IllegalArgumentException("rope scaling type is null");
        if ((type == Type.FACTORS) != (factors != null)) throw new IllegalArgumentException("per-frequency factors go with type FACTORS only");
        if (factors != null) {
            factors = factors.clone();
            for (double f : factors) if (!(f > 0 && Double.isFinite(f))) throw new IllegalArgumentException("rope frequency factors must be finite and > 0, got " + f);
        }
        if ((type == Type.LINEAR || type == Type.LLAMA3) && !(factor >= 1 && Double.isFinite(factor))) {
            throw new IllegalArgumentException("rope scaling factor must be a finite number >= 1, got " + factor);
        }
        if (type == Type.LLAMA3) {
            if (!(lowFreqFactor > 0 && highFreqFactor > lowFreqFactor && Double.isFinite(highFreqFactor))) {
                throw new IllegalArgumentException("llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor, got "
                        + lowFreqFactor + " and " + highFreqFactor);
            }
            if (originalMaxPositions < 1) {
                throw new IllegalArgumentException("llama3 rope scaling needs original_max_position_embeddings >= 1, got " + originalMaxPositions);
            }
        }
    }

    public static RopeScaling linear(double factor) {
        return new RopeScaling(Type.LINEAR, factor, 0, 0, 0);
    }

    public static RopeScaling llama3(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {
        return new RopeScaling(Type.LLAMA3, factor, lowFreqFactor, highFreqFactor, originalMaxPositions);
    }

    /** Each frequency divided by its own factor (a GGUF file's rope_freqs.weight); as many factors as frequencies. */
    public static RopeScaling factors(double[] divisors) {
        return new RopeScaling(Type.FACTORS, 1, 0, 0, 0, divisors);
    }

    @Override
    public double[] factors() {
        return factors == null ? null : factors.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof RopeScaling r && type == r.type && factor == r.factor && lowFreqFactor == r.lowFreqFactor
                && highFreqFactor == r.highFreqFactor && originalMaxPositions == r.originalMaxPositions && java.util.Arrays.equals(factors, r.factors);
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(type, factor, lowFreqFactor, highFreqFactor, originalMaxPositions) * 31 + java.util.Arrays.hashCode(factors);
    }

    @Override
    public String toString() {
        return switch (type) {
            case NONE -> "none";
            case LINEAR -> "linear(factor " + factor + ")";
            case LLAMA3 -> "llama3(factor " + factor + ", low " + lowFreqFactor + ", high " + highFreqFactor + ", original " + originalMaxPositions + ")";
            case FACTORS -> "factors" + java.util.Arrays.toString(factors);
        };
    }

    public boolean isNone() {
        return type == Type.NONE;
    }

    /** The inverse frequencies for a rotary dim (even) and base theta. */
    public double[] invFreq(int rotaryDim, double theta) {
        if (rotaryDim < 2 || (rotaryDim & 1) != 0) throw new IllegalArgumentException("rotary dim must be even and >= 2, got " + rotaryDim);
        if (!(theta > 0)) throw new IllegalArgumentException("theta must be > 0, got " + theta);
        double[] f = new double[rotaryDim / 2];
        if (factors != null && factors.length != f.length) {
            throw new IllegalArgumentException(factors.length + " rope frequency factors for a rotary dim of " + rotaryDim + " (" + f.length + " frequencies)");
        }
        for (int i = 0; i < f.length; i++) {
            double base = 1.0 / Math.pow(theta, (2.0 * i) / rotaryDim);
            f[i] = switch (type) {
                case NONE -> base;
                case LINEAR -> base / factor;
                case LLAMA3 -> llama3(base);
                case FACTORS -> base / factors[i];
            };
        }
        return f;
    }

    private double llama3(double invFreq) {
        double wavelen = 2 * Math.PI / invFreq;
        double lowWavelen = originalMaxPositions / lowFreqFactor, highWavelen = originalMaxPositions / highFreqFactor;
        if (wavelen > lowWavelen) return invFreq / factor; // low frequencies: interpolated
        if (wavelen < highWavelen) return invFreq;         // high frequencies: kept
        double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        return (1 - smooth) * invFreq / factor + smooth * invFreq;
    }
}
