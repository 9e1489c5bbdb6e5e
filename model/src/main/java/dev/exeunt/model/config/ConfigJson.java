package dev.exeunt.model.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.io.CheckpointFormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads and writes Hugging Face {@code config.json}: the backbone in the keys transformers uses
 * for GPT-2 ({@code n_embd, n_layer, ...}) and Llama ({@code hidden_size, num_hidden_layers, ...}),
 * plus an {@code early_exit} section that Hugging Face ignores and Exeunt reads.
 */
public final class ConfigJson {
    private static final ObjectMapper JSON = new ObjectMapper();

    private ConfigJson() {}

    public static ObjectNode toJson(ModelConfig c) {
        ObjectNode o = JSON.createObjectNode();
        if (c.family() == Family.GPT2) {
            o.putArray("architectures").add("GPT2LMHeadModel");
            o.put("model_type", "gpt2");
            o.put("vocab_size", c.vocabSize());
            o.put("n_embd", c.dModel());
            o.put("n_layer", c.nLayers());
            o.put("n_head", c.nHeads());
            o.put("n_inner", c.ffnHidden());
            o.put("n_positions", c.maxSeqLen());
            o.put("n_ctx", c.maxSeqLen());
            o.put("layer_norm_epsilon", c.normEps());
            o.put("activation_function", "gelu_new");
        } else {
            o.putArray("architectures").add("LlamaForCausalLM");
            o.put("model_type", "llama");
            o.put("vocab_size", c.vocabSize());
            o.put("hidden_size", c.dModel());
            o.put("num_hidden_layers", c.nLayers());
            o.put("num_attention_heads", c.nHeads());
            o.put("num_key_value_heads", c.nKvHeads());
            o.put("intermediate_size", c.ffnHidden());
            o.put("max_position_embeddings", c.maxSeqLen());
            o.put("rms_norm_eps", c.normEps());
            o.put("rope_theta", c.ropeTheta());
            o.put("hidden_act", "silu");
        }
        o.put("tie_word_embeddings", c.tiedEmbeddings());
        if (c.bosId() >= 0) o.put("bos_token_id", c.bosId());
        if (c.eosId() >= 0) o.put("eos_token_id", c.eosId());
        o.put("torch_dtype", "float32");
        if (!c.exits().isEmpty()) {
            ObjectNode ee = o.putObject("early_exit");
            ee.put("dynamic_token_weights", c.dynamicTokenWeights());
            ArrayNode arr = ee.putArray("exits");
            for (ExitConfig e : c.exits()) {
                ObjectNode x = arr.addObject();
                x.put("layer", e.layer());
                x.put("placement", e.placement().name().toLowerCase());
                x.put("kind", e.kind().id());
                x.put("shared_head", e.sharedHead());
                x.put("temperature", e.temperature());
                ObjectNode w = x.putObject("loss_weight");
                w.put("init", e.weight().init());
                w.put("target", e.weight().target());
                w.put("warmup_iters", e.weight().warmupIters());
                w.put("shape", e.weight().shape().name().toLowerCase());
            }
        }
        return o;
    }

    public static void write(ModelConfig c, Path file) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), toJson(c));
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    public static ModelConfig read(Path file) throws IOException {
        if (!Files.exists(file)) throw new IOException("missing " + file);
        JsonNode o;
        try {
            o = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new CheckpointFormatException(file, "malformed JSON: " + e.getMessage(), e);
        }
        try {
            return fromJson(o);
        } catch (RuntimeException e) { // any failure on a hostile file is a format error naming it
            throw new CheckpointFormatException(file, String.valueOf(e.getMessage()), e);
        }
    }

    public static ModelConfig fromJson(JsonNode o) {
        String type = o.path("model_type").asText("");
        List<ExitConfig> exits = new ArrayList<>();
        boolean dynamic = false;
        JsonNode ee = o.path("early_exit");
        if (ee.isObject()) {
            dynamic = ee.path("dynamic_token_weights").asBoolean(false);
            for (JsonNode x : ee.path("exits")) {
                JsonNode w = x.path("loss_weight");
                WeightSchedule ws = new WeightSchedule(w.path("init").asDouble(1.0), w.path("target").asDouble(1.0),
                        w.path("warmup_iters").asInt(0),
                        WeightSchedule.Shape.valueOf(w.path("shape").asText("linear").toUpperCase()));
                exits.add(new ExitConfig(need(x, "layer").asInt(),
                        ExitConfig.Placement.valueOf(x.path("placement").asText("post").toUpperCase()),
                        ExitKind.parse(x.path("kind").asText("norm")), x.path("shared_head").asBoolean(false), ws,
                        x.path("temperature").asDouble(1.0)));
            }
        }
        int bos = firstInt(o.path("bos_token_id")), eos = firstInt(o.path("eos_token_id"));
        switch (type) {
            case "gpt2" -> {
                int d = need(o, "n_embd").asInt();
                JsonNode inner = o.path("n_inner");
                return new ModelConfig(Family.GPT2, need(o, "vocab_size").asInt(), d, need(o, "n_layer").asInt(),
                        need(o, "n_head").asInt(), need(o, "n_head").asInt(),
                        inner.isNumber() ? inner.asInt() : 4 * d, o.path("n_positions").asInt(1024),
                        o.path("layer_norm_epsilon").asDouble(1e-5), 10000, o.path("tie_word_embeddings").asBoolean(true),
                        exits, dynamic, bos, eos);
            }
            case "llama", "mistral" -> {
                int heads = need(o, "num_attention_heads").asInt();
                return new ModelConfig(Family.LLAMA, need(o, "vocab_size").asInt(), need(o, "hidden_size").asInt(),
                        need(o, "num_hidden_layers").asInt(), heads, o.path("num_key_value_heads").asInt(heads),
                        need(o, "intermediate_size").asInt(), o.path("max_position_embeddings").asInt(2048),
                        o.path("rms_norm_eps").asDouble(1e-6), o.path("rope_theta").asDouble(10000),
                        o.path("tie_word_embeddings").asBoolean(false), exits, dynamic, bos, eos);
            }
            default -> throw new IllegalArgumentException("unsupported model_type '" + type + "' (supported: gpt2, llama)");
        }
    }

    private static JsonNode need(JsonNode o, String key) {
        JsonNode v = o.get(key);
        if (v == null || v.isNull()) throw new IllegalArgumentException("config.json lacks '" + key + "'");
        return v;
    }

    private static int firstInt(JsonNode n) {
        if (n.isArray() && !n.isEmpty()) return n.get(0).asInt();
        return n.isNumber() ? n.asInt() : -1;
    }
}
