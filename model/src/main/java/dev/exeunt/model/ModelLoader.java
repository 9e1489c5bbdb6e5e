package dev.exeunt.model;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.gguf.GgufModelLoader;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Loads what users point at: a Hugging Face layout directory (Exeunt's own checkpoints) or a GGUF file. */
public final class ModelLoader {
    private ModelLoader() {}

    public static ModelCheckpoint.Loaded load(Path path, Device device) throws IOException {
        return load(path, device, false);
    }

    /** As {@link #load(Path, Device)}; {@code force} accepts a checkpoint's tokenizer.json that is not the one it was trained with. */
    public static ModelCheckpoint.Loaded load(Path path, Device device, boolean force) throws IOException {
        if (Files.isRegularFile(path) && path.getFileName().toString().toLowerCase(java.util.Locale.ROOT).endsWith(".gguf")) {
            return GgufModelLoader.load(path, device);
        }
        if (!Files.exists(path)) throw new IOException("model " + path + " does not exist (give a checkpoint directory or a .gguf file)");
        return ModelCheckpoint.load(path, device, force);
    }
}
