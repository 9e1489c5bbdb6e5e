package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.cli.MpiTrainJob.App;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.tune.ExitTuner;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code tune --pp} writes the one-rank tune's log losses and checkpoint (the backbone copied byte for
 * byte, the exits within float rounding): as local threads at pp 4 with the last two stages holding no
 * exit (they are not started), and at tp 2 x pp 2 with --pipeline-layers; and as an mpirun job of 3
 * processes at pp 3 whose last stage holds no exit (its process says so and waits; the job ends cleanly).
 */
class TunePipelineCliTest {
    @TempDir
    static Path tmp;
    private static String data, base;

    @BeforeAll
    static void prepare() throws Exception {
        data = TrainDataParallelCliTest.prepare(tmp);
        base = tmp.resolve("base").toString();
        var r = CliEndToEndTest.exeunt("train", "--data", data, "--out", base, "--layers", "4", "--d-model", "32", "--heads", "2",
                "--seq-len", "16", "--batch", "4", "--iters", "2", "--exits", "", "--eval-every", "0", "--json");
        assertEquals(0, r.code(), r.err());
    }

    static String[] tuneArgs(Path out, String exits, String... more) {
        List<String> a = new ArrayList<>(List.of("tune", "--model", base, "--data", data, "--exits", exits, "--exit-kind", "norm",
                "--out", out.toString(), "--seq-len", "16", "--batch", "4", "--grad-accum", "2", "--iters", "3", "--json"));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    static Path tune(String name, String exits, String... more) {
        Path out = tmp.resolve(name);
        var r = CliEndToEndTest.exeunt(tuneArgs(out, exits, more));
        assertEquals(0, r.code(), r.err());
        return out;
    }

    @Test
    void pipelineTuneAsLocalThreadsMatchesOneRank() throws Exception {
        Path one = tune("one-12", "1,2");
        Path out = tmp.resolve("pp4");
        var r = CliEndToEndTest.exeunt(tuneArgs(out, "1,2", "--pp", "4"));
        assertEquals(0, r.code(), r.err());
        assertSameTune(one, out, "pp 4");

        Path one14 = tune("one-14", "1,4");
        assertSameTune(one14, tune("tp2pp2", "1,4", "--tp", "2", "--pp", "2", "--pipeline-layers", "3,1"), "tp 2 x pp 2, layers 3,1");
    }

    @Test
    void pipelineTuneUnderMpirunMatchesOneRankAndIdleStagesExitCleanly() throws Exception {
        MpiTrainJob.requireMpirun();
        Path one = tune("one-13", "1,3");
        Path out = tmp.resolve("mpi-pp3");
        // 4 layers over 3 stages: [2, 1, 1]; the exits are on stages 0 and 1, so stage 2's process has nothing to do.
        var job = MpiTrainJob.run(Duration.ofSeconds(120), new App(3, MpiTrainJob.exeunt(List.of(), tuneArgs(out, "1,3", "--pp", "3"))));
        System.out.println("mpirun -np 3 tune --pp 3: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("exeunt: rank 2: pipeline stage 2 of 3 holds no exit and has nothing to do"), job::toString);
        assertEquals(1, job.output().lines().filter(l -> l.startsWith("{\"iterations\":3")).count(), job::toString);
        assertSameTune(one, out, "mpirun pp 3");
    }

    static void assertSameTune(Path one, Path layout, String name) throws Exception {
        List<String> a = Files.readAllLines(one.resolve(ExitTuner.LOG)), b = Files.readAllLines(layout.resolve(ExitTuner.LOG));
        assertEquals(3, a.size());
        assertEquals(a.size(), b.size(), name);
        for (int s = 0; s < a.size(); s++) {
            double[] x = losses(a.get(s)), y = losses(b.get(s));
            assertEquals(2, x.length, a.get(s));
            for (int i = 0; i < x.length; i++) assertEquals(x[i], y[i], 1e-5 * Math.abs(x[i]) + 1e-6, name + " line " + s + ": " + b.get(s));
        }
        try (var x = SafetensorsCheckpoint.open(one.resolve(ModelCheckpoint.WEIGHTS));
             var y = SafetensorsCheckpoint.open(layout.resolve(ModelCheckpoint.WEIGHTS))) {
            assertEquals(x.names(), y.names(), name);
            assertTrue(x.names().contains("exits.1.head.weight"), x.names().toString());
            for (String t : x.names()) {
                if (!t.startsWith("exits.")) {
                    assertEquals(-1L, x.data(t).mismatch(y.data(t)), name + ": backbone tensor " + t + " changed");
                    continue;
                }
                try (Tensor u = TensorFiles.load(x, t, Device.CPU); Tensor v = TensorFiles.load(y, t, Device.CPU)) {
                    float[] p = u.toFloatArray(), q = v.toFloatArray();
                    for (int i = 0; i < p.length; i++) assertEquals(p[i], q[i], 5e-5, name + " " + t + "[" + i + "]");
                }
            }
        }
        assertEquals(Files.readString(one.resolve(ModelCheckpoint.CONFIG)), Files.readString(layout.resolve(ModelCheckpoint.CONFIG)), name);
    }

    static double[] losses(String line) {
        String l = line.substring(line.indexOf("\"exit_losses\""), line.indexOf(",\"exit_weights\""));
        return TrainDataParallelCliTest.NUMBER.matcher(l).results().mapToDouble(m -> Double.parseDouble(m.group())).toArray();
    }
}
