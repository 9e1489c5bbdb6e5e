package dev.exeunt.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.io.CheckpointFormatException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The store's decisions on states a crash cannot produce but a person or a failing disk can: each is
 * a clear error that names the problem, and nothing is deleted that might be the only copy.
 */
class CheckpointStoreTest {
    private static final String LOG = "run_log.jsonl";

    /** Publishes a checkpoint of two small files into {@code out} through the real save path. */
    private static CheckpointManifest save(CheckpointStore store, int iteration, String content) throws IOException {
        Path staged = store.beginStaging();
        Files.writeString(staged.resolve(ModelCheckpoint.CONFIG), "{\"iteration\":" + iteration + "}");
        Files.writeString(staged.resolve(ModelCheckpoint.WEIGHTS), content);
        if (Files.exists(store.target().resolve(LOG))) Files.copy(store.target().resolve(LOG), staged.resolve(LOG));
        return store.publish(iteration);
    }

    @Test
    void generationsCountSavesAndTheLogIsCutBackToTheCheckpointOnRecovery(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        Files.createDirectories(store.target());
        Files.writeString(store.target().resolve(LOG), "line 0\n");
        assertEquals(1, save(store, 1, "first").generation());
        Files.writeString(store.target().resolve(LOG), "line 1\n", StandardOpenOption.APPEND);
        var second = save(store, 2, "second");
        assertEquals(2, second.generation());
        assertEquals(14, second.logs().get(LOG));
        Files.writeString(store.target().resolve(LOG), "line 2, after the checkpoint\n", StandardOpenOption.APPEND);
        assertEquals(2, store.recover().checkpoint().orElseThrow().iteration());
        assertEquals("line 0\nline 1\n", Files.readString(store.target().resolve(LOG)));
        second.verify(store.target());
    }

    @Test
    void aShortenedFileIsADamagedCheckpointNotAFreshStart(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        save(store, 1, "some weights");
        try (var ch = FileChannel.open(store.target().resolve(ModelCheckpoint.WEIGHTS), StandardOpenOption.WRITE)) {
            ch.truncate(4);
        }
        var e = assertThrows(CheckpointFormatException.class, store::recover);
        assertTrue(e.getMessage().contains("model.safetensors is 4 bytes but its manifest says 12"), e.getMessage());
        assertTrue(Files.exists(store.target().resolve(ModelCheckpoint.WEIGHTS)), "the damaged copy must be left for a person");
        assertThrows(CheckpointFormatException.class, () -> save(store, 2, "x"));
    }

    @Test
    void aHandEditedConfigIsNotDamageButADeletedOneIs(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        var m = save(store, 1, "some weights");
        Files.writeString(store.target().resolve(ModelCheckpoint.CONFIG), "{\"iteration\": 1, \"torch_dtype\": \"float32\"}");
        assertEquals(1, store.recover().checkpoint().orElseThrow().iteration());
        m.verify(store.target());
        Files.delete(store.target().resolve(ModelCheckpoint.CONFIG));
        var e = assertThrows(CheckpointFormatException.class, store::recover);
        assertTrue(e.getMessage().contains("lacks config.json"), e.getMessage());
    }

    @Test
    void aChangedByteFailsTheChecksum(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        var m = save(store, 1, "some weights");
        Files.writeString(store.target().resolve(ModelCheckpoint.WEIGHTS), "some wEights");
        var e = assertThrows(CheckpointFormatException.class, () -> m.verify(store.target()));
        assertTrue(e.getMessage().contains("model.safetensors") && e.getMessage().contains("CRC32C"), e.getMessage());
    }

    @Test
    void anUnreadableManifestIsNamed(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        save(store, 1, "w");
        Files.writeString(store.target().resolve(CheckpointManifest.FILE), "{\"format\": \"exeunt-checkpoint\", \"files\": ");
        var e = assertThrows(CheckpointFormatException.class, store::recover);
        assertTrue(e.getMessage().contains(CheckpointManifest.FILE) && e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void aCompleteStagedCopyIsNotPublishedOverSomeoneElsesFiles(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        save(store, 1, "w");
        // As a crash between the renames leaves it, except that a person put their own files under <out> meanwhile.
        Files.move(store.target(), store.staging());
        Files.createDirectories(store.target());
        Files.writeString(store.target().resolve("notes.txt"), "mine");
        var e = assertThrows(IOException.class, store::recover);
        assertTrue(e.getMessage().contains("not an Exeunt checkpoint"), e.getMessage());
        assertTrue(Files.exists(store.staging().resolve(CheckpointManifest.FILE)) && Files.exists(store.target().resolve("notes.txt")));
    }

    @Test
    void aSetAsideDirectoryWithSubdirectoriesIsNotDeleted(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        save(store, 1, "w");
        Files.createDirectories(store.previous().resolve("photos"));
        var e = assertThrows(IOException.class, store::recover);
        assertTrue(e.getMessage().contains("photos"), e.getMessage());
        assertTrue(Files.isDirectory(store.previous().resolve("photos")));
    }

    @Test
    void anOlderCompleteCopyLosesToTheNewerOneWhicheverSlotItIsIn(@TempDir Path tmp) throws IOException {
        var store = new CheckpointStore(tmp.resolve("out"), Set.of(LOG));
        save(store, 1, "old");
        Path keep = Files.createDirectories(tmp.resolve("keep"));
        try (var files = Files.list(store.target())) {
            for (Path f : files.toList()) Files.copy(f, keep.resolve(f.getFileName()));
        }
        save(store, 2, "new");
        // The newer copy under .old, the older one under <out>: recovery must follow generations, not names.
        Files.move(store.target(), store.previous());
        Files.move(keep, store.target());
        var r = store.recover();
        assertEquals(2, r.checkpoint().orElseThrow().iteration());
        assertEquals("new", Files.readString(store.target().resolve(ModelCheckpoint.WEIGHTS)));
        assertFalse(Files.exists(store.previous()) || Files.exists(store.staging()));
    }

    @Test
    void aMisspelledCrashPointIsAnErrorNotASilentPass() {
        String before = System.getProperty(CrashPoints.PROPERTY);
        System.setProperty(CrashPoints.PROPERTY, "staging-publishd");
        try {
            var e = assertThrows(IllegalArgumentException.class, () -> CrashPoints.reach(CrashPoints.SAVE_BEGIN));
            assertTrue(e.getMessage().contains("names no crash point"), e.getMessage());
        } finally {
            if (before == null) System.clearProperty(CrashPoints.PROPERTY);
            else System.setProperty(CrashPoints.PROPERTY, before);
        }
    }
}
