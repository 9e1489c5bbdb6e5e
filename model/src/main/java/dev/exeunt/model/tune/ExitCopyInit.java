package dev.exeunt.model.tune;

import dev.exeunt.model.checkpoint.CheckpointLayout;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;

/**
 * EE-Tuning's copy initialisation (EARLY-EXIT.md section 4): an exit's norm from the final norm, its head
 * from the final head (or the tied embedding), an mlp branch from its layer's MLP, a layer exit from the
 * backbone's last layer; each read from the pretrained checkpoint and sharded like its source, so a stage
 * need not hold the source itself.
 */
final class ExitCopyInit {
    private ExitCopyInit() {}

    /** Loads {@code model}'s exits (this rank's shards of those on its stage) from their sources in {@code ckpt}. */
    static void apply(EarlyExitModel model, SafetensorsCheckpoint ckpt) throws IOException {
        ModelConfig config = model.config();
        boolean gpt2 = config.family() == Family.GPT2;
        String finalNorm = gpt2 ? "ln_f" : "model.norm";
        String head = config.tiedEmbeddings() ? (gpt2 ? "wte.weight" : "model.embed_tokens.weight") : "lm_head.weight";
        String layerPrefix = gpt2 ? "h." : "model.layers.";
        for (Exit exit : model.exits()) {
            String p = Exit.prefix(exit.index()) + ".";
            for (String name : model.parameters().all().keySet()) {
                if (!name.startsWith(p)) continue;
                String rest = name.substring(p.length());
                String from;
                if (rest.startsWith("norm.")) from = finalNorm + rest.substring("norm".length());
                else if (rest.equals("head.weight")) from = head;
                else if (rest.startsWith("mlp.")) from = layerPrefix + (exit.config().layer() - 1) + "." + rest;
                else if (rest.startsWith("layer.")) from = layerPrefix + (config.nLayers() - 1) + rest.substring("layer".length());
                else throw new IllegalStateException("no copy source for " + name);
                String src = CheckpointLayout.resolve(ckpt, from);
                if (src == null) throw new dev.exeunt.model.io.CheckpointFormatException(ckpt.location(), "lacks " + from + " to initialise " + name);
                try (Tensor t = TensorFiles.load(ckpt, src, Device.CPU)) {
                    ModelCheckpoint.loadShard(model.parameters(), name, t); // sharded like its source
                }
            }
        }
    }
}
