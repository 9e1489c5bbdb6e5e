package dev.exeunt.cli;

import dev.exeunt.model.ModelLoader;
import dev.exeunt.model.gguf.GgufExporter;
import dev.exeunt.tensor.Device;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Set;

/** A checkpoint (or GGUF file) written as GGUF, the exits included unless asked not to. */
final class ExportGgufCommand implements Main.Command {
    public String summary() {
        return "write a model as a GGUF file (llama.cpp's layout; the exits as extra tensors unless --no-exits)";
    }

    public String usage() {
        return """
                usage: exeunt export-gguf --model DIR|FILE.gguf --out FILE.gguf [--outtype f32|f16|q8_0|q4_0 (f32)]
                                          [--no-exits] [--name NAME] [--force]
                  Writes llama.cpp's layout (general.architecture llama or gpt2, its keys and tensor names) and the
                  tokenizer (byte-level BPE or SentencePiece). Norms and biases stay F32; a matrix whose rows do not
                  split into 32-wide blocks is written F16. f32 is the default so that the file generates exactly
                  the checkpoint's tokens.
                  The exits go in as tensors named exits.<i>.* with the config.json under exeunt.config, which
                  Exeunt loads back. llama.cpp refuses a file holding tensors it does not know: --no-exits writes
                  the backbone alone, as llama.cpp loads it.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("no-exits", "force"));
        Path model = Path.of(a.require("model", "a checkpoint directory or a .gguf file"));
        Path file = Path.of(a.require("out", "the .gguf file to write"));
        var type = GgufExporter.OutType.parse(a.get("outtype", "f32"));
        boolean exits = !a.getBool("no-exits", false), force = a.getBool("force", false);
        String name = a.get("name", model.toAbsolutePath().normalize().getFileName().toString().replaceFirst("(?i)\\.gguf$", ""));
        a.checkAllUsed();
        if (!file.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".gguf")) {
            throw new Args.UsageException("--out must name a .gguf file, got " + file);
        }
        if (Files.isDirectory(file)) throw new Args.UsageException("--out " + file + " is a directory");
        try (var loaded = ModelLoader.load(model, Device.CPU, force)) {
            if (loaded.tokenizer() == null) System.err.println("note: " + model + " has no tokenizer; the file will hold none");
            System.err.printf(Locale.ROOT, "writing %s (%s, %s) ...%n", file, type.name().toLowerCase(Locale.ROOT),
                    exits && !loaded.model().config().exits().isEmpty() ? loaded.model().config().exits().size() + " exits" : "backbone only");
            var s = GgufExporter.export(loaded.model(), loaded.tokenizer(), name, type, exits, file);
            out.printf(Locale.ROOT, "wrote %s: %d tensors (%s), %.2f MiB%n", file, s.tensors(), s.byType().toString().replaceAll("[{}]", ""),
                    s.bytes() / (double) (1 << 20));
            if (!s.fallbacks().isEmpty()) {
                out.println("F16 instead of " + type.name().toLowerCase(Locale.ROOT) + " (rows not a multiple of 32): " + String.join(", ", s.fallbacks()));
            }
        }
        return 0;
    }
}
