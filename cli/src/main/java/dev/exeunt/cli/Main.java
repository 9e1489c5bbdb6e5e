package dev.exeunt.cli;

import dev.exeunt.model.train.TrainingDivergedException;
import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.TensorAllocationException;
import java.io.IOException;
import java.io.PrintStream;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/** The {@code exeunt} command line: one class per command, dispatched by name. */
public final class Main {
    /** A command of the launcher. */
    interface Command {
        String summary();

        String usage();

        int run(String[] args, PrintStream out) throws Exception;

        /** As {@link #run(String[], PrintStream)}, for a command that also reports on {@code err} (stdout keeps only its result). */
        default int run(String[] args, PrintStream out, PrintStream err) throws Exception {
            return run(args, out);
        }
    }

    static final Map<String, Command> COMMANDS = new LinkedHashMap<>();

    static {
        COMMANDS.put("demo", new DemoCommand());
        COMMANDS.put("prepare", new PrepareCommand());
        COMMANDS.put("train", new TrainCommand());
        COMMANDS.put("tune", new TuneCommand());
        COMMANDS.put("eval", new EvalCommand());
        COMMANDS.put("generate", new GenerateCommand());
        COMMANDS.put("sweep", new SweepCommand());
        COMMANDS.put("serve", new ServeCommand());
        COMMANDS.put("tokenize", new TokenizeCommand());
        COMMANDS.put("export-gguf", new ExportGgufCommand());
        COMMANDS.put("bench", new BenchCommand());
        COMMANDS.put("version", new VersionCommand());
    }

    /** The JVM flags the engine needs; the ./exeunt launcher passes them. */
    static final String JVM_FLAGS = dev.exeunt.tensor.JvmFlags.REQUIRED;

    public static void main(String[] argv) {
        // Without it the first kernel fails with a bare NoClassDefFoundError: jdk/incubator/vector/Vector.
        if (!dev.exeunt.tensor.JvmFlags.hasVectorModule()) {
            System.err.println("exeunt: this JVM was started without the Vector API module; run it as\n  java " + JVM_FLAGS
                    + " -jar exeunt.jar ...\n(the ./exeunt launcher adds these flags)");
            System.exit(2);
        }
        RankThreads.configure(); // before any tensor work sizes the CPU pool
        System.exit(run(argv, System.out, System.err));
    }

    static int run(String[] argv, PrintStream out, PrintStream err) {
        if (argv.length == 0 || argv[0].equals("help") || argv[0].equals("--help") || argv[0].equals("-h")) {
            if (argv.length > 1 && COMMANDS.containsKey(argv[1])) {
                out.println(COMMANDS.get(argv[1]).usage());
                return 0;
            }
            out.println(help());
            return argv.length == 0 ? 2 : 0;
        }
        Command cmd = COMMANDS.get(argv[0]);
        if (cmd == null) {
            err.println("exeunt: unknown command '" + argv[0] + "'\n\n" + help());
            return 2;
        }
        String[] rest = Arrays.copyOfRange(argv, 1, argv.length);
        if (Arrays.asList(rest).contains("--help") || Arrays.asList(rest).contains("-h")) {
            out.println(cmd.usage());
            return 0;
        }
        try {
            HostMemory.limit(); // a bad -Dexeunt.memory.limit or .cache fails here, before any work
            return cmd.run(rest, out, err);
        } catch (Args.UsageException e) {
            err.println("exeunt " + argv[0] + ": " + e.getMessage() + "\n\n" + cmd.usage());
            return 2;
        } catch (Exception | OutOfMemoryError e) {
            err.println("exeunt " + argv[0] + ": " + describe(e));
            if (System.getenv("EXEUNT_DEBUG") != null || isUnexpected(e)) e.printStackTrace(err);
            return e instanceof TrainingDivergedException ? 3 : 1;
        }
    }

    /**
     * What a failed command prints after its name: the message of an expected failure (bad input, a
     * diverged run, a memory limit, a failed rank of the local engine), else "unexpected error: " and the
     * exception. Also how a failing rank of an mpi job describes its failure before it ends the job.
     */
    static String describe(Throwable e) {
        if (e instanceof TrainingDivergedException) return "training stopped: " + e.getMessage();
        if (e instanceof OutOfMemoryError) {
            return "out of Java heap memory (" + e.getMessage() + "); give the JVM more with -Xmx, or the input is larger than it should be";
        }
        TensorAllocationException oom = allocationFailure(e);
        if (oom != null) return oom.getMessage();
        if (!isUnexpected(e)) return e.getMessage();
        return "unexpected error: " + e;
    }

    /** A failure no clear message was written for: printed with its stack trace. */
    static boolean isUnexpected(Throwable e) {
        return !(e instanceof IOException || e instanceof IllegalArgumentException || e instanceof IllegalStateException
                || e instanceof Args.UsageException || e instanceof CommException || e instanceof TrainingDivergedException
                || e instanceof OutOfMemoryError || allocationFailure(e) != null);
    }

    /**
     * The memory-limit error behind {@code e}, also when a worker thread's exception wraps it, or Arrow's
     * own (a dataset reader's or writer's vectors, allocated under the same limit); else null.
     */
    static TensorAllocationException allocationFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof TensorAllocationException a) return a;
            if (t instanceof org.apache.arrow.memory.OutOfMemoryException a) return HostMemory.outOfMemory(a);
            if (t.getCause() == t) break;
        }
        return null;
    }

    static String help() {
        var sb = new StringBuilder("usage: exeunt <command> [options]   (exeunt help <command> for its options)\n\ncommands:\n");
        COMMANDS.forEach((name, c) -> sb.append(String.format("  %-10s %s%n", name, c.summary())));
        sb.append("\nEvery command that reports results takes --json.");
        return sb.toString();
    }
}
