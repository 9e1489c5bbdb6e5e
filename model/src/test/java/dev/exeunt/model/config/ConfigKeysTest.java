package dev.exeunt.model.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.SafetensorsDtype;
import dev.exeunt.model.io.SafetensorsWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A model directory is either fully understood or refused: each config.json setting that Exeunt does not
 * implement, every unknown key, every out-of-range or mistyped size, and every tensor the config does
 * not use is refused by name when a real saved checkpoint is loaded; harmless keys load and change nothing.
 */
@ExtendWith(LeakCheck.class)
class ConfigKeysTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final BpeTokenizer TOK = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog ".repeat(20)), 300,
            List.of("<|endoftext|>"));
    static final ModelConfig LLAMA = ModelConfig.llama(TOK.vocabSize(), 16, 2, 2, 1, 32, 32, List.of());
    static final ModelConfig GPT2 = ModelConfig.gpt2(TOK.vocabSize(), 16, 2, 2, 32, List.of());

    static Path saved(Path dir, ModelConfig cfg) throws IOException {
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 3)) {
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    /** Merges {@code patch} (a JSON object) into the directory's config.json. */
    static void patch(Path dir, String patch) throws IOException {
        Path f = dir.resolve("config.json");
        ObjectNode o = (ObjectNode) JSON.readTree(f.toFile());
        o.setAll((ObjectNode) JSON.readTree(patch));
        JSON.writeValue(f.toFile(), o);
    }

    /** Rewrites model.safetensors with extra F32 tensors of the given shapes (filled with 0.5). */
    static void addTensors(Path dir, Map<String, long[]> extra) throws IOException {
        Path w = dir.resolve("model.safetensors"), tmp = dir.resolve("new.safetensors");
        try (var src = SafetensorsCheckpoint.open(w); var arena = Arena.ofConfined()) {
            var writer = new SafetensorsWriter();
            for (var e : src.tensors().entrySet()) writer.add(e.getKey(), e.getValue().dtype(), e.getValue().shape(), src.data(e.getKey()));
            for (var e : extra.entrySet()) {
                long n = 1;
                for (long d : e.getValue()) n *= d;
                MemorySegment data = arena.allocate(4 * n);
                for (long i = 0; i < n; i++) data.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, i, 0.5f);
                writer.add(e.getKey(), SafetensorsDtype.F32, e.getValue(), data);
            }
            writer.write(tmp);
        }
        Files.move(tmp, w, StandardCopyOption.REPLACE_EXISTING);
    }

    static String refusal(Path dir) {
        var e = assertThrows(CheckpointFormatException.class, () -> ModelCheckpoint.load(dir, Device.CPU).close());
        assertTrue(e.getMessage().contains("config.json") || e.getMessage().contains("model.safetensors"), e.getMessage());
        return e.getMessage();
    }

    static Stream<Arguments> llamaRefusals() {
        return Stream.of(
                Arguments.of("{\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}", "'rope_scaling.rope_type' is 'dynamic'"),
                Arguments.of("{\"rope_scaling\": {\"type\": \"longrope\", \"factor\": 4.0}}", "is 'longrope': only default, linear and llama3"),
                Arguments.of("{\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 4.0, \"beta\": 1}}", "unknown key(s) 'rope_scaling.beta'"),
                Arguments.of("{\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", "'rope_parameters.rope_type' is 'yarn'"),
                Arguments.of("{\"attention_bias\": true}", "checkpoint lacks 8 tensor(s) config.json needs: model.layers.0.self_attn.q_proj.bias"),
                Arguments.of("{\"mlp_bias\": true}", "'mlp_bias' is true"),
                Arguments.of("{\"head_dim\": 4}", "model.layers.0.self_attn.q_proj.weight is [16, 16] but the config needs [8, 16]"),
                Arguments.of("{\"hidden_act\": \"gelu\"}", "'hidden_act' is 'gelu'"),
                Arguments.of("{\"pretraining_tp\": 2}", "'pretraining_tp' is not 1"),
                Arguments.of("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 2}", "'use_sliding_window' asks for sliding-window"),
                Arguments.of("{\"sliding_window\": null}", "unknown key(s) 'sliding_window'"), // not a Llama key at all
                Arguments.of("{\"frobnicate\": 1, \"quantization_config\": {}}", "unknown key(s) 'frobnicate', 'quantization_config'"),
                Arguments.of("{\"num_hidden_layers\": 2147483647}", "'num_hidden_layers' is 2147483647; the number of layers must be in 1..1024"),
                Arguments.of("{\"vocab_size\": 2147483647}", "'vocab_size' is 2147483647"),
                Arguments.of("{\"intermediate_size\": 2147483647}", "'intermediate_size' is 2147483647"),
                Arguments.of("{\"max_position_embeddings\": 2147483647}", "'max_position_embeddings' is 2147483647"),
                Arguments.of("{\"num_hidden_layers\": 3000000000}", "'num_hidden_layers' is 3000000000, which does not fit in a 32-bit integer"),
                Arguments.of("{\"hidden_size\": 1.5}", "'hidden_size' must be a JSON integer (the model width), got fraction 1.5"),
                Arguments.of("{\"hidden_size\": \"16\"}", "'hidden_size' must be a JSON integer"),
                Arguments.of("{\"num_attention_heads\": 3}", "'num_attention_heads' is 3, which does not divide hidden_size 16"),
                Arguments.of("{\"rms_norm_eps\": -1}", "'rms_norm_eps' is -1"),
                Arguments.of("{\"tie_word_embeddings\": \"no\"}", "'tie_word_embeddings' must be true or false"),
                Arguments.of("{\"eos_token_id\": 100000}", "'eos_token_id' is 100000"),
                Arguments.of("{\"model_type\": \"bert\"}", "unsupported model_type 'bert'"),
                Arguments.of("{\"early_exit\": {\"exits\": [{\"layer\": 1, \"kind\": \"norm\", \"colour\": \"red\"}]}}",
                        "unknown key(s) 'early_exit.exits[0].colour'"),
                Arguments.of("{\"early_exit\": {\"exits\": [{\"layer\": 5}]}}", "layer must be in 1..2"),
                // within bounds, but not what the weights hold: refused before the model is allocated
                Arguments.of("{\"num_hidden_layers\": 3}", "config.json says num_hidden_layers 3 but model.safetensors holds layers 0..1"),
                Arguments.of("{\"vocab_size\": 1000}", "config.json says vocab_size 1000, hidden_size 16"),
                Arguments.of("{\"intermediate_size\": 64}", "config.json says intermediate_size 64, hidden_size 16"),
                Arguments.of("{\"num_key_value_heads\": 2}", "model.layers.0.self_attn.k_proj.weight is [8, 16] but the config needs [16, 16]"),
                Arguments.of("{\"tie_word_embeddings\": true}", "does not use: lm_head.weight"));
    }

    @ParameterizedTest
    @MethodSource("llamaRefusals")
    void llamaSettingsThatAreNotImplementedAreRefusedByName(String patch, String expected, @TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        patch(dir, patch);
        long before = HostMemory.allocatedBytes();
        HostMemory.resetPeak();
        String message = refusal(dir);
        assertTrue(message.contains(expected), message);
        assertEquals(0, HostMemory.peakBytes() - before, "refused before any tensor was allocated");
    }

    static Stream<Arguments> gpt2Refusals() {
        return Stream.of(
                Arguments.of("{\"n_layer\": 2147483647}", "'n_layer' is 2147483647"),
                Arguments.of("{\"vocab_size\": 2147483647}", "'vocab_size' is 2147483647"),
                Arguments.of("{\"n_inner\": 2147483647}", "'n_inner' is 2147483647"),
                Arguments.of("{\"n_positions\": 2147483647}", "'n_positions' is 2147483647"),
                Arguments.of("{\"n_embd\": 3000000000}", "'n_embd' is 3000000000, which does not fit"),
                Arguments.of("{\"n_head\": 1.5}", "'n_head' must be a JSON integer"),
                Arguments.of("{\"activation_function\": \"gelu\"}", "'activation_function' is 'gelu'"),
                Arguments.of("{\"activation_function\": \"relu\"}", "'activation_function' is 'relu'"),
                Arguments.of("{\"scale_attn_by_inverse_layer_idx\": true}", "'scale_attn_by_inverse_layer_idx' is true"),
                Arguments.of("{\"scale_attn_weights\": false}", "'scale_attn_weights' is false"),
                Arguments.of("{\"add_cross_attention\": true}", "'add_cross_attention' is true"),
                Arguments.of("{\"rope_theta\": 10000}", "unknown key(s) 'rope_theta'"),
                Arguments.of("{\"n_layer\": 3}", "config.json says n_layer 3 but model.safetensors holds layers 0..1"),
                Arguments.of("{\"n_positions\": 64}", "config.json says n_positions 64, n_embd 16"));
    }

    @ParameterizedTest
    @MethodSource("gpt2Refusals")
    void gpt2SettingsThatAreNotImplementedAreRefusedByName(String patch, String expected, @TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, GPT2);
        patch(dir, patch);
        long before = HostMemory.allocatedBytes();
        HostMemory.resetPeak();
        String message = refusal(dir);
        assertTrue(message.contains(expected), message);
        assertEquals(0, HostMemory.peakBytes() - before, "refused before any tensor was allocated");
    }

    @Test
    void duplicateKeysAreRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        String json = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), json.replaceFirst("\\{", "{\"hidden_size\": 32,"));
        assertTrue(refusal(dir).contains("Duplicate field 'hidden_size'"));
    }

    @Test
    void aConfigThatIsNotAnObjectIsRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        for (String text : List.of("", "[]", "null", "{\"model_type\": \"llama\", \"hidden_size\": 16")) {
            Files.writeString(dir.resolve("config.json"), text);
            String m = refusal(dir);
            assertTrue(m.contains("must be a JSON object") || m.contains("malformed JSON"), text + ": " + m);
        }
    }

    @Test
    void biasTensorsMustMatchWhatTheConfigAsksFor(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        addTensors(dir, Map.of("model.layers.0.self_attn.q_proj.bias", new long[] {16}, "model.layers.1.self_attn.q_proj.bias",
                new long[] {16}));
        String m = refusal(dir);
        assertTrue(m.contains("does not use: model.layers.0.self_attn.q_proj.bias, model.layers.1.self_attn.q_proj.bias"), m);
        patch(dir, "{\"attention_bias\": true}"); // Llama's attention_bias: all four projections, so k, v and o lack theirs
        m = refusal(dir);
        assertTrue(m.contains("lacks 6 tensor(s)") && m.contains("model.layers.0.self_attn.o_proj.bias"), m);
    }

    @Test
    void anExtraLayerOrHeadIsRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, GPT2);
        addTensors(dir, Map.of("score.weight", new long[] {2, 16}));
        assertTrue(refusal(dir).contains("does not use: score.weight"));
    }

    /** The loss of {@code model} on a fixed batch. */
    static double loss(EarlyExitModel model) {
        int[] ids = TOK.encode("the quick brown fox jumps over the lazy dog the quick brown fox");
        int t = ids.length - 1;
        try (var s = dev.exeunt.tensor.Scope.open()) {
            Tensor in = Tensor.ofInts(java.util.Arrays.copyOf(ids, t), 1, t);
            Tensor tgt = Tensor.ofInts(java.util.Arrays.copyOfRange(ids, 1, t + 1), 1, t);
            return model.objective(in, tgt, null, 0);
        }
    }

    /** openai-community/gpt2's config.json, sizes made tiny, with its causal-mask buffers in the weights. */
    @Test
    void huggingFaceGpt2ConfigAndBuffersLoadAndChangeNothing(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, GPT2);
        double reference;
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            reference = loss(loaded.model());
        }
        patch(dir, """
                {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
                 "bos_token_id": 0, "embd_pdrop": 0.1, "eos_token_id": 0, "initializer_range": 0.02,
                 "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 32, "n_embd": 16, "n_head": 2, "n_layer": 2,
                 "n_positions": 32, "resid_pdrop": 0.1, "summary_activation": null, "summary_first_dropout": 0.1,
                 "summary_proj_to_labels": true, "summary_type": "cls_index", "summary_use_proj": true,
                 "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
                 "scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false, "reorder_and_upcast_attn": false,
                 "use_cache": true, "transformers_version": "4.26.0.dev0", "n_inner": null}""");
        ObjectNode o = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        o.remove("torch_dtype"); // the original has none
        JSON.writeValue(dir.resolve("config.json").toFile(), o);
        addTensors(dir, Map.of("h.0.attn.bias", new long[] {1, 1, 32, 32}, "h.1.attn.bias", new long[] {1, 1, 32, 32},
                "h.0.attn.masked_bias", new long[] {}));
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            assertEquals(reference, loss(loaded.model()), 0.0);
            ObjectNode written = ConfigJson.toJson(loaded.model().config());
            for (String k : List.of("attn_pdrop", "summary_type", "task_specific_params", "transformers_version", "architectures")) {
                assertEquals(o.get(k), written.get(k), k);
            }
        }
    }

    /** meta-llama/Llama-3.2-1B's config.json with tiny sizes and rope_scaling null (its llama3 scaling is refused). */
    @Test
    void huggingFaceLlamaConfigLoadsAndChangesNothing(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        double reference;
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            reference = loss(loaded.model());
        }
        patch(dir, """
                {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
                 "eos_token_id": [2, 3], "head_dim": 8, "hidden_act": "silu", "hidden_size": 16, "initializer_range": 0.02,
                 "intermediate_size": 32, "max_position_embeddings": 32, "mlp_bias": false, "model_type": "llama",
                 "num_attention_heads": 2, "num_hidden_layers": 2, "num_key_value_heads": 1, "pretraining_tp": 1,
                 "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": false,
                 "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0", "use_cache": true}""");
        addTensors(dir, Map.of("model.layers.0.self_attn.rotary_emb.inv_freq", new long[] {4}));
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            assertEquals(reference, loss(loaded.model()), 0.0);
            assertEquals(2, loaded.model().config().eosId());
            assertEquals("[2,3]", ConfigJson.toJson(loaded.model().config()).get("eos_token_id").toString());
        }
        patch(dir, "{\"model_type\": \"mistral\", \"sliding_window\": 32}"); // a window as long as the context changes nothing
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            assertEquals(reference, loss(loaded.model()), 0.0);
            assertEquals("mistral", ConfigJson.toJson(loaded.model().config()).get("model_type").asText());
        }
    }

    /** An exit's self-distillation weight is written only when set, and read back; a negative one is refused by name. */
    @Test
    void exitSelfDistillationRoundTrips() throws IOException {
        var exits = List.of(ExitConfig.post(1, ExitKind.NORM, 1.0).withSelfDistill(0.75), ExitConfig.post(2, ExitKind.NORM, 1.0));
        ModelConfig c = ModelConfig.gpt2(11, 8, 2, 2, 16, exits);
        ObjectNode json = ConfigJson.toJson(c);
        var written = json.get("early_exit").get("exits");
        assertEquals(0.75, written.get(0).get("self_distill").asDouble());
        assertEquals(null, written.get(1).get("self_distill"), "an exit without self-distillation writes no key");
        ModelConfig back = ConfigJson.fromJson(json, Path.of("config.json"));
        assertEquals(0.75, back.exits().get(0).selfDistill());
        assertEquals(0.0, back.exits().get(1).selfDistill());
        ((ObjectNode) written.get(0)).put("self_distill", -1);
        var err = assertThrows(CheckpointFormatException.class,
                () -> ConfigJson.fromJson(json, Path.of("config.json")));
        assertTrue(err.getMessage().contains("self_distill"), err.getMessage());
    }

    @Test
    void writtenConfigReadsBackIdenticallyWithItsCarriedKeys(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, LLAMA);
        patch(dir, "{\"torch_dtype\": \"bfloat16\", \"_name_or_path\": \"tiny\", \"rope_scaling\": null}");
        ModelConfig first = ConfigJson.read(dir.resolve("config.json"));
        assertEquals("bfloat16", first.carriedKeys().get("torch_dtype").asText());
        ConfigJson.write(first, tmp.resolve("again.json"));
        assertEquals(first, ConfigJson.read(tmp.resolve("again.json")));
        assertEquals(LLAMA, first.withCarriedKeys(null));
    }
}
