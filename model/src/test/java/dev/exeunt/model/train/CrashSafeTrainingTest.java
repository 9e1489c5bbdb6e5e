package dev.exeunt.model.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.ChildJvm;
import dev.exeunt.model.checkpoint.CrashPoints;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A training run killed abruptly ({@code Runtime.halt}, as SIGKILL) at every step of a save, in a child
 * JVM, is finished by rerunning the same run: it resumes from the newest complete checkpoint and ends
 * with the weights, optimiser state and log of a run that was never interrupted.
 */
@ExtendWith(LeakCheck.class)
class CrashSafeTrainingTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    static Path work;
    static Path baseline;

    @BeforeAll
    static void uninterruptedRun() throws IOException {
        List<String> docs = new ArrayList<>();
        try (Stream<Path> files = Files.walk(Path.of("src/main/java/dev/exeunt/model/train"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) docs.add(Files.readString(p));
        }
        String text = String.join("\n", docs);
        var tokenizer = BpeTrainer.train(List.of(text), 300, List.of("<|endoftext|>"));
        TrainingRun.prepare(work, tokenizer, tokenizer.encode(text));
        baseline = work.resolve("baseline");
        assertEquals(0, TrainingRun.run(work, baseline));
    }

    /**
     * Every save step of the second save (a checkpoint to fall back to), and two of the first save, when
     * only the log exists: before it (the rerun must start afresh, not refuse the directory) and between
     * its renames (the log-only directory is the one set aside).
     */
    static Stream<Arguments> crashes() {
        var first = Stream.of(CrashPoints.SAVE_BEGIN, CrashPoints.TARGET_MOVED_ASIDE).map(step -> Arguments.of(1, step));
        return Stream.concat(first, CrashPoints.SAVE_STEPS.stream().map(step -> Arguments.of(2, step)));
    }

    @ParameterizedTest(name = "killed at {1} of save {0}")
    @MethodSource("crashes")
    void rerunAfterAKillResumesFromTheNewestCompleteCheckpoint(int save, String step) throws Exception {
        String name = "kill-" + save + "-" + step;
        Path out = work.resolve(name);
        var exit = ChildJvm.run(work, name, List.of("-D" + CrashPoints.PROPERTY + "=" + step + ":" + save), TrainingRun.class,
                work.toString(), out.toString());
        assertEquals(137, exit.status(), name + ": the child should have died at its crash point\n" + exit.stderr());
        assertTrue(exit.stderr().contains("halting at " + step), exit.stderr());

        // The new checkpoint is complete once its manifest is in place; before that the previous one is the newest.
        boolean newOneComplete = CrashPoints.SAVE_STEPS.indexOf(step) >= CrashPoints.SAVE_STEPS.indexOf(CrashPoints.STAGING_COMPLETE);
        int expected = (save - 1 + (newOneComplete ? 1 : 0)) * TrainingRun.SAVE_EVERY;
        assertEquals(expected, TrainingRun.run(work, out), name + ": resumed at the wrong iteration");

        assertFalse(Files.exists(out.resolveSibling(name + ".saving")), "staging directory left behind");
        assertFalse(Files.exists(out.resolveSibling(name + ".old")), "set-aside copy left behind");
        assertSameTensors(baseline.resolve("model.safetensors"), out.resolve("model.safetensors"));
        assertSameTensors(baseline.resolve(TrainingState.OPTIMIZER), out.resolve(TrainingState.OPTIMIZER));
        assertEquals(log(baseline), log(out), name + ": train_log.jsonl differs from the uninterrupted run's");
    }

    @Test
    void killedAgainWhileRecoveringTheRerunStillResumesFromTheNewestCheckpoint() throws Exception {
        Path out = work.resolve("twice");
        // Killed when the second checkpoint is complete but not yet published ...
        var first = ChildJvm.run(work, "twice-1", List.of("-D" + CrashPoints.PROPERTY + "=" + CrashPoints.STAGING_COMPLETE + ":2"),
                TrainingRun.class, work.toString(), out.toString());
        assertEquals(137, first.status(), first.stderr());
        // ... then again while the rerun's recovery publishes it, between its two renames.
        var second = ChildJvm.run(work, "twice-2", List.of("-D" + CrashPoints.PROPERTY + "=" + CrashPoints.TARGET_MOVED_ASIDE),
                TrainingRun.class, work.toString(), out.toString());
        assertEquals(137, second.status(), second.stderr());
        assertFalse(Files.exists(out), "the kill should have hit between recovery's renames");
        assertEquals(2 * TrainingRun.SAVE_EVERY, TrainingRun.run(work, out));
        assertSameTensors(baseline.resolve("model.safetensors"), out.resolve("model.safetensors"));
        assertEquals(log(baseline), log(out));
    }

    @Test
    void aDirectoryWithForeignFilesIsStillRefused() throws IOException {
        Path out = Files.createDirectories(work.resolve("foreign"));
        Files.writeString(out.resolve("notes.txt"), "mine");
        var e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> TrainingRun.run(work, out));
        assertTrue(e.getMessage().contains("not empty and holds no Exeunt checkpoint"), e.getMessage());
        assertEquals("mine", Files.readString(out.resolve("notes.txt")));
    }

    private static void assertSameTensors(Path expected, Path actual) throws IOException {
        try (var a = SafetensorsCheckpoint.open(expected); var b = SafetensorsCheckpoint.open(actual)) {
            assertEquals(a.names(), b.names());
            for (String n : a.names()) assertEquals(-1L, a.data(n).mismatch(b.data(n)), n + " differs from the uninterrupted run");
        }
    }

    /** The log without its timings: every iteration's losses, rates and norms, and every validation, in order. */
    private static List<String> log(Path dir) throws IOException {
        List<String> out = new ArrayList<>();
        List<Integer> iters = new ArrayList<>();
        List<String> lines = new ArrayList<>(Files.readAllLines(dir.resolve(Trainer.LOG)));
        if (Files.exists(dir.resolve(Trainer.EVAL_LOG))) lines.addAll(Files.readAllLines(dir.resolve(Trainer.EVAL_LOG)));
        for (String line : lines) {
            ObjectNode o = (ObjectNode) JSON.readTree(line);
            o.remove(List.of("tokens_per_s", "step_ms", "sync_ms", "elapsed_s", "eta_s"));
            if (o.has("loss")) iters.add(o.get("iter").asInt());
            out.add(o.toString());
        }
        List<Integer> once = new ArrayList<>();
        for (int i = 0; i < TrainingRun.ITERS; i++) once.add(i);
        assertEquals(once, iters, dir + ": each iteration must be logged exactly once, in order");
        return out;
    }
}
