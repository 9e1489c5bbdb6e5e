package dev.exeunt.model.config;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * A decoder and its early exits. GPT-2 style and Llama style differ only in the fields' values
 * ({@link Family}); every misconfiguration the spec rules out fails here, at construction.
 *
 * @param ffnHidden   MLP inner size (GPT-2: 4 * dModel; Llama: intermediate_size)
 * @param maxSeqLen   learned-position table size (GPT-2) or the longest context allowed (Llama)
 * @param tiedEmbeddings final head shares the input embedding matrix
 * @param dynamicTokenWeights multiply each token's exit loss by that exit's max probability (no gradient)
 * @param attention   where a Llama-family model's attention differs from Llama 2's (head size, biases, q/k norm,
 *                    RoPE scaling; {@link AttentionOptions#LLAMA} for GPT-2, whose attention is fixed)
 * @param carriedKeys the keys of the {@code config.json} this config was read from that do not change the
 *                    computation ({@code architectures}, {@code torch_dtype}, ...): written back unchanged, so
 *                    tune and train keep them. Never null; a copy goes in and comes out.
 */
public record ModelConfig(Family family, int vocabSize, int dModel, int nLayers, int nHeads, int nKvHeads,
                          int ffnHidden, int maxSeqLen, double normEps, double ropeTheta, boolean tiedEmbeddings,
                          List<ExitConfig> exits, boolean dynamicTokenWeights, int bosId, int eosId, ObjectNode carriedKeys,
                          AttentionOptions attention) {

    // Upper bounds on every size, far above any released model (Llama 3.1 405B: 126 layers, d_model 16384,
    // ffn 53248; vocabularies reach 256K, contexts 1M), so that a hostile config is refused by name
    // instead of growing the heap until the process dies.
    public static final int MAX_LAYERS = 1024;
    public static final int MAX_D_MODEL = 65536;
    public static final int MAX_FFN = 1 << 20;
    public static final int MAX_VOCAB = 1 << 24;
    public static final int MAX_POSITIONS = 1 << 22;

    public ModelConfig {
        exits = List.copyOf(exits.stream().sorted(Comparator.comparingInt(ExitConfig::inputDepth)).toList());
        carriedKeys = carriedKeys == null ? JsonNodeFactory.instance.objectNode() : carriedKeys.deepCopy();
        attention = attention == null ? AttentionOptions.LLAMA : attention;
        // a head_dim equal to d_model / n_heads is no departure: one form, so equal configs compare equal
        if (nHeads > 0 && attention.headDim() * nHeads == dModel) attention = attention.withHeadDim(0);
        require(vocabSize > 0, "vocab_size must be > 0, got " + vocabSize);
        require(dModel > 0 && nLayers > 0 && nHeads > 0, "d_model, n_layers and n_heads must be > 0");
        require(vocabSize <= MAX_VOCAB, "vocab_size " + vocabSize + " exceeds the limit of " + MAX_VOCAB);
        require(dModel <= MAX_D_MODEL, "d_model " + dModel + " exceeds the limit of " + MAX_D_MODEL);
        require(nLayers <= MAX_LAYERS, "n_layers " + nLayers + " exceeds the limit of " + MAX_LAYERS);
        require(ffnHidden <= MAX_FFN, "ffn_hidden " + ffnHidden + " exceeds the limit of " + MAX_FFN);
        require(maxSeqLen <= MAX_POSITIONS, "max_seq_len " + maxSeqLen + " exceeds the limit of " + MAX_POSITIONS);
        require(Double.isFinite(normEps) && normEps > 0, "norm epsilon must be finite and > 0, got " + normEps);
        require(Double.isFinite(ropeTheta) && ropeTheta > 0, "rope theta must be finite and > 0, got " + ropeTheta);
        require(attention.headDim() > 0 || dModel % nHeads == 0, "d_model " + dModel + " is not divisible by n_heads " + nHeads
                + " (set head_dim for heads of another size)");
        require(family == Family.LLAMA || attention.isLlama(), "GPT-2 style models have no attention options (head_dim, biases, q/k norm, rope scaling)");
        require(nKvHeads > 0 && nHeads % nKvHeads == 0, "n_heads " + nHeads + " is not a multiple of n_kv_heads " + nKvHeads);
        require(family == Family.LLAMA || nKvHeads == nHeads, "GPT-2 style models have n_kv_heads == n_heads");
        require(ffnHidden > 0 && maxSeqLen > 0, "ffn_hidden and max_seq_len must be > 0");
        int hd = attention.headDim() > 0 ? attention.headDim() : dModel / nHeads;
        require(family == Family.GPT2 || hd % 2 == 0, "RoPE needs an even head dim, got " + hd);
        for (ExitConfig e : exits) {
            String where = "exit at layer " + e.layer() + " (" + e.placement().name().toLowerCase() + ", " + e.kind().id() + ")";
            require(e.layer() >= 1 && e.layer() <= nLayers,
                    where + ": layer must be in 1.." + nLayers + " (exits past the last layer do not exist)");
            require(!(e.kind() == ExitKind.MLP && e.placement() == ExitConfig.Placement.PRE),
                    where + ": an mlp exit splits its layer's own MLP, so it must be a post exit");
            require(!e.sharedHead() || tiedEmbeddings,
                    where + ": a shared (tied) exit head needs a model with tied input/output embeddings; this model's head is untied");
        }
        List<Integer> mlpLayers = new ArrayList<>();
        for (ExitConfig e : exits) {
            if (e.kind() == ExitKind.MLP) {
                require(!mlpLayers.contains(e.layer()), "two mlp exits at layer " + e.layer());
                mlpLayers.add(e.layer());
            }
        }
    }

    /** Without carried keys, as built from command-line options. */
    public ModelConfig(Family family, int vocabSize, int dModel, int nLayers, int nHeads, int nKvHeads, int ffnHidden,
                       int maxSeqLen, double normEps, double ropeTheta, boolean tiedEmbeddings, List<ExitConfig> exits,
                       boolean dynamicTokenWeights, int bosId, int eosId) {
        this(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps, ropeTheta, tiedEmbeddings,
                exits, dynamicTokenWeights, bosId, eosId, null, null);
    }

    @Override
    public ObjectNode carriedKeys() {
        return carriedKeys.deepCopy();
    }

    private static void require(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException("invalid model config: " + message);
    }

    /** The size of each attention head: head_dim when the config sets it, else d_model / n_heads. */
    public int headDim() {
        return attention.headDim() > 0 ? attention.headDim() : dModel / nHeads;
    }

    public ModelConfig withAttention(AttentionOptions a) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tiedEmbeddings, exits, dynamicTokenWeights, bosId, eosId, carriedKeys, a);
    }

    /** A GPT-2 style config with the usual defaults. */
    public static ModelConfig gpt2(int vocab, int dModel, int nLayers, int nHeads, int maxSeqLen, List<ExitConfig> exits) {
        return new ModelConfig(Family.GPT2, vocab, dModel, nLayers, nHeads, nHeads, 4 * dModel, maxSeqLen, 1e-5, 10000,
                true, exits, false, -1, -1);
    }

    /** A Llama style config (untied head, RMSNorm, SwiGLU). */
    public static ModelConfig llama(int vocab, int dModel, int nLayers, int nHeads, int nKvHeads, int ffnHidden,
                                    int maxSeqLen, List<ExitConfig> exits) {
        return new ModelConfig(Family.LLAMA, vocab, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, 1e-5, 10000,
                false, exits, false, -1, -1);
    }

    public ModelConfig withExits(List<ExitConfig> newExits) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tiedEmbeddings, newExits, dynamicTokenWeights, bosId, eosId, carriedKeys, attention);
    }

    public ModelConfig withDynamicTokenWeights(boolean on) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tiedEmbeddings, exits, on, bosId, eosId, carriedKeys, attention);
    }

    public ModelConfig withTiedEmbeddings(boolean tied) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tied, exits, dynamicTokenWeights, bosId, eosId, carriedKeys, attention);
    }

    public ModelConfig withSpecialTokens(int bos, int eos) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tiedEmbeddings, exits, dynamicTokenWeights, bos, eos, carriedKeys, attention);
    }

    public ModelConfig withCarriedKeys(ObjectNode keys) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                ropeTheta, tiedEmbeddings, exits, dynamicTokenWeights, bosId, eosId, keys, attention);
    }

    public ModelConfig withRopeTheta(double theta) {
        return new ModelConfig(family, vocabSize, dModel, nLayers, nHeads, nKvHeads, ffnHidden, maxSeqLen, normEps,
                theta, tiedEmbeddings, exits, dynamicTokenWeights, bosId, eosId, carriedKeys, attention);
    }
}
