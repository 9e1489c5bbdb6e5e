package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A resumed train run writes back the harmless keys of the config.json it resumed from. */
class TrainResumeKeepsConfigKeysTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void resumeKeepsHarmlessConfigKeys(@TempDir Path tmp) throws Exception {
        Path corpus = Files.createDirectories(tmp.resolve("corpus"));
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).limit(20).toList()) {
                Files.copy(p, corpus.resolve(p.getFileName() + ".txt"));
            }
        }
        String data = tmp.resolve("data/train.arrow").toString();
        CliEndToEndTest.json(CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "300", "--out", data, "--json"));
        Path out = tmp.resolve("run");
        String[] common = {"train", "--data", data, "--out", out.toString(), "--family", "llama", "--layers", "2", "--d-model", "16",
                "--heads", "2", "--seq-len", "16", "--batch", "2", "--exits", "", "--json"};
        CliEndToEndTest.json(CliEndToEndTest.exeunt(concat(common, "--iters", "2")));
        Path config = out.resolve("config.json");
        ObjectNode o = (ObjectNode) JSON.readTree(config.toFile());
        o.put("transformers_version", "4.45.0").put("_name_or_path", "resume-test").putNull("rope_scaling");
        JSON.writeValue(config.toFile(), o);
        var resumed = CliEndToEndTest.json(CliEndToEndTest.exeunt(concat(common, "--iters", "4")));
        assertEquals(2, resumed.get("iterations").asInt(), resumed.toString()); // iterations 3 and 4: it resumed
        ObjectNode after = (ObjectNode) JSON.readTree(config.toFile());
        assertEquals("4.45.0", after.path("transformers_version").asText(), after.toString());
        assertEquals("resume-test", after.path("_name_or_path").asText(), after.toString());
        assertEquals(true, after.has("rope_scaling") && after.get("rope_scaling").isNull(), after.toString());
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
