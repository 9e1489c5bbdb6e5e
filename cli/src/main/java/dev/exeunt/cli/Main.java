package dev.exeunt.cli;

import dev.exeunt.model.train.TrainingDivergedException;
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
        COMMANDS.put("bench", new BenchCommand());
        COMMANDS.put("version", new VersionCommand());
    }

    public static void main(String[] argv) {
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
        if (Arrays.asList(rest).contains("--help")) {
            out.println(cmd.usage());
            return 0;
        }
        try {
            HostMemory.limit(); // a bad -Dexeunt.memory.limit or .cache fails here, before any work
            return cmd.run(rest, out);
        } catch (Args.UsageException e) {
            err.println("exeunt " + argv[0] + ": " + e.getMessage() + "\n\n" + cmd.usage());
            return 2;
        } catch (TrainingDivergedException e) {
            err.println("exeunt " + argv[0] + ": training stopped: " + e.getMessage());
            return 3;
        } catch (IOException | IllegalArgumentException | IllegalStateException e) {
            err.println("exeunt " + argv[0] + ": " + e.getMessage());
            if (System.getenv("EXEUNT_DEBUG") != null) e.printStackTrace(err);
            return 1;
        } catch (Exception e) {
            TensorAllocationException oom = allocationFailure(e);
            if (oom != null) {
                err.println("exeunt " + argv[0] + ": " + oom.getMessage());
                if (System.getenv("EXEUNT_DEBUG") != null) e.printStackTrace(err);
                return 1;
            }
            err.println("exeunt " + argv[0] + ": unexpected error: " + e);
            e.printStackTrace(err);
            return 1;
        } catch (OutOfMemoryError e) {
            err.println("exeunt " + argv[0] + ": out of Java heap memory (" + e.getMessage()
                    + "); give the JVM more with -Xmx, or the input is larger than it should be");
            return 1;
        }
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
