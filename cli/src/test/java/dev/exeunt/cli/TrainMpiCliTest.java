package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.exeunt.cli.MpiTrainJob.App;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train} as a real mpirun job, one JVM per rank: the same losses as one rank, and every way a job
 * goes wrong ends it with a message and a non-zero exit, never a hang: a bad layout (every process refuses
 * it alike and exits), a rank that fails on its own (an allocation over that rank's memory limit: it prints
 * its message and aborts the job while the other rank waits in a collective), a rank killed with SIGKILL.
 * Skipped without mpirun, except in CI.
 */
class TrainMpiCliTest {
    /** For 2-3 JVMs on a loaded 2-core machine; a hang is caught by it, never waited out. */
    private static final Duration LIMIT = Duration.ofSeconds(60);

    @TempDir
    static Path tmp;
    private static String data;

    @BeforeAll
    static void prepare() throws Exception {
        MpiTrainJob.requireMpirun();
        data = TrainDataParallelCliTest.prepare(tmp);
    }

    private static MpiTrainJob.Result train(int ranks, String... args) throws Exception {
        return MpiTrainJob.run(LIMIT, new App(ranks, MpiTrainJob.exeunt(List.of(), args)));
    }

    @Test
    void twoProcessesWriteTheSameLossesAsOneRank() throws Exception {
        var one = TrainDataParallelCliTest.train(data, tmp.resolve("one"), "1");
        Path out = tmp.resolve("mpi2");
        var job = train(2, TrainDataParallelCliTest.args(data, out, "--data-parallel-size", "2"));
        System.out.println("mpirun -np 2 train: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        TrainDataParallelCliTest.assertSameLosses(one, TrainDataParallelCliTest.lossLines(out));
        assertTrue(job.output().contains("layout: tp 1 x dp 2 = 2 mpi processes, 1 CPU threads per process"), job::toString);
        // world rank 0 alone reports and saves
        assertEquals(1, job.output().lines().filter(l -> l.startsWith("{\"iterations\":3")).count(), job::toString);
        assertTrue(Files.exists(out.resolve("model.safetensors")));
    }

    /** Two pipeline stages as two processes: one rank's losses, and the schedule trace gathers both stages' timelines. */
    @Test
    void pipelineStagesAsProcessesWriteTheSameLossesAsOneRankAndTraceTheSchedule() throws Exception {
        var one = TrainDataParallelCliTest.train(data, tmp.resolve("one-pp"), "1");
        Path out = tmp.resolve("mpi-pp2"), trace = tmp.resolve("pp2-trace.json");
        var job = train(2, TrainDataParallelCliTest.args(data, out, "--pp", "2", "--trace-schedule", trace.toString()));
        System.out.println("mpirun -np 2 train --pp 2: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        TrainDataParallelCliTest.assertSameLosses(one, TrainDataParallelCliTest.lossLines(out));
        var events = new com.fasterxml.jackson.databind.ObjectMapper().readTree(trace.toFile()).get("traceEvents");
        java.util.Set<String> seen = new java.util.TreeSet<>();
        events.forEach(e -> seen.add(e.get("tid").asInt() + " " + e.path("cat").asText()));
        for (String want : List.of("0 forward", "0 backward", "1 forward", "1 backward", "1 recv", "0 exit")) {
            assertTrue(seen.contains(want), "trace lacks " + want + ": " + seen);
        }
    }

    @Test
    void aWorldTheTensorParallelSizeDoesNotDivideIsRefusedByEveryProcess() throws Exception {
        var job = train(3, TrainDataParallelCliTest.args(data, tmp.resolve("w3"), "--tp", "2"));
        System.out.println("mpirun -np 3 train --tp 2: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("world size 3 is not divisible by --tp 2"), job::toString);
    }

    @Test
    void aGivenDpThatDisagreesWithTheWorldIsRefused() throws Exception {
        var job = train(2, TrainDataParallelCliTest.args(data, tmp.resolve("dp3"), "--dp", "3"));
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("--dp 3 does not match the world: 2 processes / --tp 1 = 2 data-parallel ranks"), job::toString);
    }

    @Test
    void aTensorParallelSizeThatCannotShardTheModelIsRefused() throws Exception {
        String[] args = TrainDataParallelCliTest.args(data, tmp.resolve("tp3"), "--heads", "4",
                "--tensor-model-parallel-size", "3");
        var job = train(3, args);
        System.out.println("mpirun -np 3 train --tp 3 (4 heads): " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("n_heads 4 is not divisible by tp 3"), job::toString);
        var local = CliEndToEndTest.exeunt(args); // the local engine (no mpirun) refuses it the same way
        assertEquals(1, local.code(), local.err());
        assertTrue(local.err().contains("n_heads 4 is not divisible by tp 3"), local.err());
    }

    /** Rank 1 runs with a host-memory limit its training cannot fit in; rank 0 would wait for it in the all-reduce. */
    @Test
    void aRankThatFailsAloneEndsTheJobWithItsMessage() throws Exception {
        String[] args = TrainDataParallelCliTest.args(data, tmp.resolve("oom"), "--dp", "2");
        var job = MpiTrainJob.run(LIMIT, new App(1, MpiTrainJob.exeunt(List.of(), args)),
                new App(1, MpiTrainJob.exeunt(List.of("-Dexeunt.memory.limit=2m"), args)));
        System.out.println("rank 1 out of memory: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("exeunt: rank 1: out of host memory"), job::toString);
        assertTrue(job.output().contains("mpi rank 1 of 2 aborts the job"), job::toString);
        assertFalse(job.output().contains("\"iterations\""), job::toString);
    }

    @Test
    void aKilledRankEndsTheJob() throws Exception {
        Path out = tmp.resolve("killed"), pids = Files.createDirectories(tmp.resolve("pids")), log = tmp.resolve("killed.log");
        List<String> cmd = MpiTrainJob.writingPid(pids, MpiTrainJob.exeunt(List.of(), TrainDataParallelCliTest.args(data, out, "--iters", "100000")));
        Process job = MpiTrainJob.start(log, new App(2, cmd));
        try {
            // killed mid-run: once rank 0 has logged a step, both ranks are inside the training loop
            long deadline = System.nanoTime() + LIMIT.toNanos();
            Path trainLog = out.resolve("train_log.jsonl");
            while (!(Files.exists(trainLog) && Files.size(trainLog) > 0)) {
                if (!job.isAlive() || System.nanoTime() > deadline) fail("the job did not start training: " + Files.readString(log));
                Thread.sleep(100);
            }
            long victim = Long.parseLong(Files.readString(pids.resolve("1.pid")).trim());
            long survivor = Long.parseLong(Files.readString(pids.resolve("0.pid")).trim());
            assertTrue(ProcessHandle.of(victim).orElseThrow().destroyForcibly());
            long killed = System.nanoTime();
            var result = MpiTrainJob.finish(job, Duration.ofSeconds(30), log);
            double seconds = (System.nanoTime() - killed) / 1e9;
            System.out.println("rank 1 killed: the job ended " + seconds + " s later; " + result);
            assertFalse(result.timedOut(), result::toString);
            assertNotEquals(0, result.exitCode(), result::toString);
            assertTrue(result.output().contains("exited on signal 9"), result::toString);
            assertTrue(endsWithin(survivor, Duration.ofSeconds(10)), "rank 0 outlived the job");
        } finally {
            if (job.isAlive()) MpiTrainJob.finish(job, Duration.ZERO, log);
        }
    }

    /** Whether process {@code pid} has ended (or is a zombie: ended, its parent mpirun gone, not yet reaped) within {@code limit}. */
    private static boolean endsWithin(long pid, Duration limit) throws Exception {
        long deadline = System.nanoTime() + limit.toNanos();
        while (System.nanoTime() < deadline) {
            if (ProcessHandle.of(pid).map(h -> !h.isAlive()).orElse(true)) return true;
            Path status = Path.of("/proc/" + pid + "/status");
            try {
                if (Files.readString(status).lines().anyMatch(l -> l.startsWith("State:") && l.contains("Z"))) return true;
            } catch (java.io.IOException gone) {
                return true;
            }
            Thread.sleep(100);
        }
        return false;
    }
}
