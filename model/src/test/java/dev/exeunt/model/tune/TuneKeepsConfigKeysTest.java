package dev.exeunt.model.tune;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** tune writes back every harmless key of the model's config.json, not just the ones Exeunt computes with. */
@ExtendWith(LeakCheck.class)
class TuneKeepsConfigKeysTest {
    static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void tunedConfigKeepsTheSourcesHarmlessKeys(@TempDir Path tmp) throws IOException {
        String text = "the quick brown fox jumps over the lazy dog and runs far away ".repeat(40);
        BpeTokenizer tok = BpeTrainer.train(List.of(text), 300, List.of("<|endoftext|>"));
        Path src = tmp.resolve("src"), out = tmp.resolve("out");
        try (var m = EarlyExitModel.create(ModelConfig.llama(tok.vocabSize(), 16, 2, 2, 1, 32, 32, List.of()), Device.CPU, 1)) {
            ModelCheckpoint.save(m, tok, src);
        }
        ObjectNode config = (ObjectNode) JSON.readTree(src.resolve("config.json").toFile());
        ObjectNode harmless = (ObjectNode) JSON.readTree("""
                {"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16", "transformers_version": "4.45.0",
                 "_name_or_path": "tiny-llama", "use_cache": true, "initializer_range": 0.02, "attention_dropout": 0.0,
                 "pretraining_tp": 1, "rope_scaling": null, "attention_bias": false, "mlp_bias": false, "head_dim": 8,
                 "eos_token_id": [1, 2], "pad_token_id": 0}""");
        config.setAll(harmless);
        JSON.writeValue(src.resolve("config.json").toFile(), config);
        var tc = new TrainConfig(16, 2, 1, 1, 1e-3, 1e-4, 0, 0.0, 0.9, 0.95, 1.0, 7, 0, 2, 0, 1000, 0.0);
        try (var tuner = new ExitTuner(src, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)), ExitTuner.Init.COPY, false, 3, tc)) {
            tuner.tune(TokenWindows.of(tok.encode(text), 16), tc, out, null);
            tuner.save(out);
        }
        ObjectNode written = (ObjectNode) JSON.readTree(out.resolve("config.json").toFile());
        for (var e : harmless.properties()) assertEquals(e.getValue(), written.get(e.getKey()), e.getKey());
        assertTrue(written.has("early_exit"), written.toString());
        try (var loaded = ModelCheckpoint.load(out, Device.CPU)) {
            assertEquals(1, loaded.model().exits().size());
            assertEquals(1, loaded.model().config().eosId());
        }
    }
}
