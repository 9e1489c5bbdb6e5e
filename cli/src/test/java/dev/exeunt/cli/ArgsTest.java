package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Options from flags and from JSON/YAML config files; flags win; typos and bad values are errors. */
class ArgsTest {
    @Test
    void yamlConfigSuppliesDefaultsThatFlagsOverride(@TempDir Path tmp) throws Exception {
        Path yaml = tmp.resolve("train.yaml");
        Files.writeString(yaml, "layers: 6\nd_model: 128\nexits: [2, 4]\nlr: 0.001\ndynamic-token-weights: true\n");
        var a = new Args(new String[] {"--config", yaml.toString(), "--layers", "8", "--json"}, Set.of("json", "dynamic-token-weights"));
        assertEquals(8, a.getInt("layers", 0));
        assertEquals(128, a.getInt("d-model", 0));
        assertArrayEquals(new int[] {2, 4}, a.getInts("exits", null));
        assertEquals(0.001, a.getDouble("lr", 0), 1e-12);
        assertTrue(a.getBool("dynamic-token-weights", false));
        assertTrue(a.getBool("json", false));
        a.checkAllUsed();
    }

    @Test
    void aRepeatableOptionGivesEveryValueAndAnyOtherTakesTheLast() {
        var a = new Args(new String[] {"--input", "a", "--input", "b,c", "--lr", "1"}, Set.of());
        assertEquals(java.util.List.of("a", "b,c"), a.getAll("input"));
        assertEquals(1, a.getDouble("lr", 0), 0);
        a.checkAllUsed();
        var twice = new Args(new String[] {"--lr", "1", "--lr", "2"}, Set.of()); // a later flag overrides, as scripts rely on
        assertEquals(2, twice.getDouble("lr", 0), 0);
        twice.checkAllUsed();
        assertEquals(java.util.List.of(), new Args(new String[0], Set.of()).getAll("input"));
    }

    @Test
    void jsonConfigAndErrors(@TempDir Path tmp) throws Exception {
        Path json = tmp.resolve("c.json");
        Files.writeString(json, "{\"iters\": 10, \"exits\": \"\"}");
        var a = new Args(new String[] {"--config", json.toString(), "--lr=3e-4"}, Set.of());
        assertEquals(10, a.getInt("iters", 0));
        assertEquals(0, a.getInts("exits", null).length);
        assertEquals(3e-4, a.getDouble("lr", 0), 1e-12);
        a.checkAllUsed();
        var typo = new Args(new String[] {"--itres", "5"}, Set.of());
        var e = assertThrows(Args.UsageException.class, typo::checkAllUsed);
        assertTrue(e.getMessage().contains("--itres"), e.getMessage());
        var bad = new Args(new String[] {"--iters", "ten"}, Set.of());
        assertThrows(Args.UsageException.class, () -> bad.getInt("iters", 1));
        assertThrows(Args.UsageException.class, () -> new Args(new String[] {"--config", tmp.resolve("none.yaml").toString()}, Set.of()));
        Files.writeString(json, "[1, 2]");
        assertThrows(Args.UsageException.class, () -> new Args(new String[] {"--config", json.toString()}, Set.of()));
    }

    /** A mistyped option is refused with the closest one the command knows; one far from all of them gets no guess. */
    @Test
    void aMistypedOptionGetsASuggestion() {
        String[][] cases = {{"max-new-token", "max-new-tokens"}, {"thresold", "threshold"}, {"temprature", "temperature"}, {"zzz", null}};
        for (String[] c : cases) {
            var a = new Args(new String[] {"--" + c[0], "1"}, Set.of());
            a.getInt("max-new-tokens", 0);
            a.getDouble("threshold", 1);
            a.getDouble("temperature", 0);
            var e = assertThrows(Args.UsageException.class, a::checkAllUsed);
            assertTrue(e.getMessage().startsWith("unknown option --" + c[0]), e.getMessage());
            if (c[1] == null) assertTrue(!e.getMessage().contains("did you mean"), e.getMessage());
            else assertTrue(e.getMessage().endsWith("(did you mean --" + c[1] + "?)"), e.getMessage());
        }
    }

    @Test
    void dashHShowsACommandsOptions() {
        var r = CliEndToEndTest.exeunt("generate", "-h");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("usage: exeunt generate"), r.out());
    }
}
