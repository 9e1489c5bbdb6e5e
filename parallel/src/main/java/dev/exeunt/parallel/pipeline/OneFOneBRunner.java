package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.train.MicroBatchRunner;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.parallel.comm.Work;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * Megatron's 1F1B schedule ({@link OneFOneB}) as the {@link MicroBatchRunner} of one pipeline stage's
 * {@link dev.exeunt.model.train.Trainer}: the step's micro-batches (the ones one rank accumulates over)
 * flow through the stages, so every layout gives the one-rank losses and weights.
 *
 * <p>A forward receives its input activation from the previous stage, runs the stage's layers
 * ({@link EarlyExitModel#forwardStage}) and sends its output on asynchronously; a backward receives the
 * gradient of that output, runs EE-LLM's auxiliary-loss backward with the stage's deferred exits
 * ({@link EarlyExitModel#backwardStage}) and sends the input's gradient back: no message beyond plain
 * 1F1B. Each microbatch's tensors belong to its own {@link Scope#standalone() standalone scope}, entered
 * by its forward and its backward and freed once its backward and sends are done (microbatches end first
 * in, first out, which nested scopes cannot express).
 *
 * <p>After the schedule the gradients of a tied head's copies are summed over the stages holding one, and
 * the losses over the stages. The trainer then reduces over tp and dp, clips with the norm over every
 * stage ({@link dev.exeunt.model.nn.PipelineParallel}) and updates.
 */
public final class OneFOneBRunner implements MicroBatchRunner, AutoCloseable {
    private final ProcessGroup pp;
    private final PipelineParallel stages;
    /** The stages holding a copy of the token embedding (first stage, tied final head, shared exit heads), or null. */
    private final ProcessGroup embeddingCopies;
    private final String embeddingName;
    private final int stage, count;
    private List<BubbleFill.Route> warmupFills = List.of(), cooldownFills = List.of();
    private BubbleFill bubbleFill;
    private boolean[] holdsExit;
    /** While the stage times are to be measured: the fill count asked for (-1: default); else -2. */
    private int measureCount = -2;
    /** How many steps this runner has run (the times are measured in the second, after the JIT's warm-up). */
    private int steps;
    private boolean deferExits = true;
    private int traceIteration = -1;
    private Path traceFile;

    /** Collective over the pipeline group (it finds the stages that hold the token embedding). */
    public OneFOneBRunner(EarlyExitModel model, ProcessGroupPipelineParallel pipeline) {
        this.pp = pipeline.group();
        this.stages = pipeline;
        this.stage = pp.rank();
        this.count = pp.size();
        if (model.stage().index() != stage || model.stage().count() != count) {
            throw new IllegalArgumentException("the model is " + model.stage() + " but this rank is pipeline stage " + stage + " of " + count);
        }
        this.embeddingName = model.config().family() == dev.exeunt.model.config.Family.GPT2 ? "wte.weight" : "model.embed_tokens.weight";
        boolean holds = model.parameters().has(embeddingName);
        ProcessGroup copies = pp.split(holds ? 1 : 0, stage);
        if (holds && copies.size() > 1) {
            this.embeddingCopies = copies;
        } else {
            copies.close();
            this.embeddingCopies = null;
        }
    }

    /**
     * Fills pipeline bubbles with extra micro-batches ({@link BubbleFill}) from now on; {@code fill.count()}
     * 0 turns it off. Returns this runner.
     */
    public OneFOneBRunner fillBubbles(BubbleFill fill, EarlyExitModel model) {
        this.holdsExit = stagesHoldingExits(model);
        this.warmupFills = fill.warmup(holdsExit);
        this.cooldownFills = fill.cooldown(holdsExit);
        this.bubbleFill = fill;
        return this;
    }

    /**
     * Fills pipeline bubbles from the third step on, with each stage's forward and backward times measured
     * in the second (the first warms the JIT up): {@code count} fills per phase, or -1 for the default
     * {@link BubbleFill#defaultCount} of the measured backward:forward ratio, of which only those that fit
     * the measured bubbles run ({@link BubbleFill#fitted}). Returns this runner.
     */
    public OneFOneBRunner fillBubblesMeasured(int count, EarlyExitModel model) {
        this.holdsExit = stagesHoldingExits(model);
        this.measureCount = count;
        return this;
    }

    /** The fills in use (null before a measured ratio is known, or without filling). */
    public BubbleFill bubbleFill() {
        return bubbleFill;
    }

    /**
     * Whether exits run deferred (their heads and losses right before the micro-batch's backward, the
     * default) or in the forward, their logits alive until the backward (to measure what deferral saves).
     */
    public OneFOneBRunner deferExits(boolean defer) {
        this.deferExits = defer;
        return this;
    }

    /** Records iteration {@code iteration}'s timeline and writes it to {@code file} as Chrome trace JSON ({@link ScheduleTrace}). */
    public OneFOneBRunner traceIteration(int iteration, Path file) {
        this.traceIteration = iteration;
        this.traceFile = file;
        return this;
    }


    @Override
    public int fillMicroBatches() {
        return warmupFills.size() + cooldownFills.size();
    }

    /** Which stages hold an exit (a collective over the stages; every stage gets the same answer). */
    private boolean[] stagesHoldingExits(EarlyExitModel model) {
        double[] holds = new double[count];
        holds[stage] = model.exits().isEmpty() ? 0 : 1;
        stages.sumOverStages(holds);
        boolean[] out = new boolean[count];
        for (int s = 0; s < count; s++) out[s] = holds[s] > 0;
        return out;
    }

    /** A message in flight and what to free once it (and its microbatch) is done. */
    private record Pending(List<Work> works, Runnable release) {}

    @Override
    public Losses run(EarlyExitModel model, List<TokenWindows.Batch> micro, List<TokenWindows.Batch> fill, int seqLen, int it,
                      Backprop.LeafListener lastFinals) {
        if (fill.size() != fillMicroBatches()) throw new IllegalArgumentException(fillMicroBatches() + " bubble fills expected, got " + fill.size());
        if (it == traceIteration) pp.barrier();
        HostMemory.resetPeak();
        Step step = new Step(model, micro, fill, seqLen, it, lastFinals);
        step.runSchedule();
        Map<String, Tensor> trainable = model.parameters().trainable();
        if (embeddingCopies != null && trainable.containsKey(embeddingName)) embeddingCopies.allReduce(trainable.get(embeddingName).grad(), ReduceOp.SUM);
        // One exchange for the losses, the fills' losses, each stage's peak memory and mean compute times.
        int m = micro.size(), nExits = step.sums.length - 2, fills = step.sums.length, peaks = fills + step.fillSums.length;
        double[] all = new double[peaks + 3 * count];
        System.arraycopy(step.sums, 0, all, 0, step.sums.length);
        System.arraycopy(step.fillSums, 0, all, fills, step.fillSums.length);
        all[peaks + stage] = HostMemory.peakBytes();
        all[peaks + count + stage] = step.forwardNanos / (double) m;
        all[peaks + 2 * count + stage] = step.backwardNanos / (double) m;
        stages.sumOverStages(all);
        long[] stagePeaks = new long[count];
        for (int s = 0; s < count; s++) stagePeaks[s] = (long) all[peaks + s];
        if (measureCount > -2 && steps == 1) {
            fitFills(m, Arrays.copyOfRange(all, peaks + count, peaks + 2 * count), Arrays.copyOfRange(all, peaks + 2 * count, peaks + 3 * count));
        }
        steps++;
        if (step.trace != null) writeTrace(step.trace);
        double[] sums = Arrays.copyOf(all, fills);
        if (fill.isEmpty()) return new Losses(sums, null, stagePeaks);
        double[] fillMeans = new double[nExits];
        for (int e = 0; e < nExits; e++) {
            double n = all[fills + nExits + e];
            fillMeans[e] = n > 0 ? all[fills + e] / n : Double.NaN;
        }
        return new Losses(sums, new FillLosses(fill.size(), fillMeans), stagePeaks);
    }

    /** One step of this stage: its schedule's actions over the step's micro-batches (the fills after the batch's). */
    private final class Step {
        final EarlyExitModel model;
        final List<TokenWindows.Batch> batches = new ArrayList<>();
        final List<BubbleFill.Route> routes;
        final int m, rows, seqLen, it;
        final Scope[] owners;
        final EarlyExitModel.StageForward[] forwards;
        final Work[] activationSends;
        final List<Pending> pending = new ArrayList<>();
        final double[] sums; // this stage's share of {total, final, exits by index}
        final double[] fillSums; // each exit's fill loss sum, then how many fills trained it
        final ScheduleTrace trace;
        final List<OneFOneB.Action> schedule;
        final OneFOneB.Action lastBackward;
        final Backprop.LeafListener finals;
        long forwardNanos, backwardNanos;

        Step(EarlyExitModel model, List<TokenWindows.Batch> micro, List<TokenWindows.Batch> fill, int seqLen, int it,
             Backprop.LeafListener lastFinals) {
            this.model = model;
            this.m = micro.size();
            this.rows = micro.get(0).size();
            this.seqLen = seqLen;
            this.it = it;
            batches.addAll(micro);
            batches.addAll(fill);
            routes = new ArrayList<>(Collections.nCopies(m, BubbleFill.Route.whole(count)));
            routes.addAll(warmupFills);
            routes.addAll(cooldownFills);
            owners = new Scope[batches.size()];
            forwards = new EarlyExitModel.StageForward[batches.size()];
            activationSends = new Work[batches.size()];
            int nExits = model.config().exits().size();
            sums = new double[2 + nExits];
            fillSums = new double[2 * nExits];
            trace = it == traceIteration ? new ScheduleTrace() : null;
            schedule = OneFOneB.schedule(stage, count, m, warmupFills, cooldownFills);
            OneFOneB.Action last = null;
            for (OneFOneB.Action a : schedule) if (!a.forward()) last = a;
            lastBackward = last;
            // The stage's last backward may start the data-parallel all-reduce; not of the embedding when its
            // copies on other stages are still to be summed in (after the schedule).
            finals = lastFinals == null || embeddingCopies == null ? lastFinals : leaf -> {
                if (!embeddingName.equals(leaf.name())) lastFinals.gradientAccumulated(leaf);
            };
        }

        void runSchedule() {
            try {
                for (OneFOneB.Action a : schedule) {
                    if (a.forward()) forward(a.micro());
                    else backward(a);
                    releaseFinished(pending, false);
                }
                long t0 = System.nanoTime();
                releaseFinished(pending, true);
                if (trace != null) trace.add(ScheduleTrace.Kind.SEND_WAIT, -1, t0);
            } finally {
                releaseFinished(pending, true);
                for (Scope s : owners) if (s != null) s.close();
            }
        }

        /** Receives (or embeds) micro-batch i's input, runs the stage's layers, sends the output on. */
        void forward(int i) {
            BubbleFill.Route route = routes.get(i);
            boolean isFill = i >= m;
            owners[i] = Scope.standalone();
            try (var in = owners[i].enter()) {
                long t0 = System.nanoTime();
                Tensor input = stage == 0 ? Tensor.ofInts(batches.get(i).inputs(), rows, seqLen)
                        : receive(model, activationShape(model, rows, seqLen), stage - 1, 2 * i);
                if (trace != null && stage > 0) trace.add(ScheduleTrace.Kind.RECV, i, t0);
                try (var turn = computeTurn()) {
                    long t1 = System.nanoTime();
                    // A fill that will not come back here needs no graph.
                    try (var g = route.backwards(stage) ? null : GradMode.noGrad()) {
                        forwards[i] = deferExits || !route.backwards(stage) ? model.forwardStage(input, it)
                                : model.forwardStageUndeferred(input, Tensor.ofInts(batches.get(i).targets(), rows, seqLen), it);
                    }
                    if (stage < route.lastStage()) activationSends[i] = pp.sendAsync(contiguous(forwards[i].output()), stage + 1, 2 * i);
                    if (!isFill) forwardNanos += System.nanoTime() - t1;
                    if (trace != null) trace.add(isFill ? ScheduleTrace.Kind.FILL_FORWARD : ScheduleTrace.Kind.FORWARD, i, t1);
                }
            }
            if (!route.backwards(stage)) finish(i, null);
        }

        /**
         * Receives the gradient of micro-batch i's output (none where its route ends), runs EE-LLM's
         * auxiliary-loss backward (exits only for a fill) and sends the input's gradient back.
         */
        void backward(OneFOneB.Action a) {
            int i = a.micro();
            BubbleFill.Route route = routes.get(i);
            boolean isFill = i >= m;
            Work gradSend = null;
            try (var in = owners[i].enter()) {
                long t0 = System.nanoTime();
                Tensor grad = stage == route.lastStage() ? null : receive(model, activationShape(model, rows, seqLen), stage + 1, 2 * i + 1);
                if (trace != null && grad != null) trace.add(ScheduleTrace.Kind.RECV, i, t0);
                try (var turn = computeTurn()) {
                    long t1 = System.nanoTime();
                    Tensor targets = Tensor.ofInts(batches.get(i).targets(), rows, seqLen);
                    var listener = a.equals(lastBackward) ? finals : null;
                    EarlyExitModel.StepLosses l;
                    if (isFill) {
                        l = model.backwardExits(forwards[i], grad, targets, 1f / m, listener);
                        for (int k = 0; k < model.exits().size(); k++) {
                            if (forwards[i].exitInputs()[k] == null) continue;
                            fillSums[model.exits().get(k).index()] += l.exitLosses()[k];
                            fillSums[sums.length - 2 + model.exits().get(k).index()] += 1;
                        }
                    } else {
                        l = model.backwardStage(forwards[i], grad, targets, null, 1f / m, listener);
                        MicroBatchRunner.add(sums, model.exits(), l, m);
                    }
                    if (stage > route.firstBackward()) gradSend = pp.sendAsync(forwards[i].input().grad(), stage - 1, 2 * i + 1);
                    if (!isFill) backwardNanos += System.nanoTime() - t1;
                    if (trace != null) {
                        trace.add(isFill ? ScheduleTrace.Kind.FILL_BACKWARD : ScheduleTrace.Kind.BACKWARD, i, t1);
                        if (l.exitNanos() > 0) trace.add(isFill ? ScheduleTrace.Kind.FILL_EXIT : ScheduleTrace.Kind.EXIT, i, t1, t1 + l.exitNanos());
                    }
                }
            }
            finish(i, gradSend);
        }

        /** Hands micro-batch {@code i}'s tensors to be freed once its messages are done. */
        void finish(int i, Work gradSend) {
            List<Work> works = new ArrayList<>();
            if (activationSends[i] != null) works.add(activationSends[i]);
            if (gradSend != null) works.add(gradSend);
            Tensor input = forwards[i].input();
            Scope owner = owners[i];
            pending.add(new Pending(works, () -> {
                if (input.requiresGrad()) input.clearGrad();
                owner.close();
            }));
            forwards[i] = null;
            owners[i] = null;
            activationSends[i] = null;
        }
    }

    /**
     * With {@code -Dexeunt.pipeline.serialize=true}, the stages of one process compute one at a time (each
     * with all of its threads) while the others wait for messages: on fewer cores than stages, the traced
     * durations are then each stage's own, uncontended, for a replay as if every stage had its cores.
     */
    private static final boolean SERIALIZE = Boolean.getBoolean("exeunt.pipeline.serialize");
    private static final java.util.concurrent.locks.ReentrantLock COMPUTE = new java.util.concurrent.locks.ReentrantLock(true);

    /** The turn to compute (a no-op unless the stages are serialized). */
    private static Turn computeTurn() {
        if (!SERIALIZE) return Turn.NONE;
        COMPUTE.lock();
        return COMPUTE::unlock;
    }

    private interface Turn extends AutoCloseable {
        Turn NONE = () -> {};

        @Override
        void close();
    }

    /** The fills for the measured per-stage mean forward and backward times (the same on every stage). */
    private void fitFills(int micros, double[] forward, double[] backward) {
        double f = 0, b = 0;
        for (int s = 0; s < count; s++) {
            f += forward[s];
            b += backward[s];
        }
        double r = Math.max(0.1, b / f);
        bubbleFill = new BubbleFill(measureCount >= 0 ? measureCount : BubbleFill.defaultCount(count, r), r);
        var fills = bubbleFill.fitted(holdsExit, micros, forward, backward);
        warmupFills = fills.warmup();
        cooldownFills = fills.cooldown();
        measureCount = -2;
    }

    private void writeTrace(ScheduleTrace trace) {
        try {
            ScheduleTrace.write(pp, trace, traceFile);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the schedule trace " + traceFile, e);
        }
    }

    private static int[] activationShape(EarlyExitModel model, int rows, int seqLen) {
        var tp = model.tensorParallel();
        int positions = tp.sequenceParallel() ? seqLen / tp.size() : seqLen;
        return new int[] {rows, positions, model.config().dModel()};
    }

    private Tensor receive(EarlyExitModel model, int[] shape, int from, int tag) {
        Tensor t = Tensor.empty(DType.F32, model.device(), shape);
        pp.recv(t, from, tag);
        return t;
    }

    private static Tensor contiguous(Tensor t) {
        try (var g = GradMode.noGrad()) {
            return Ops.contiguous(t.detach());
        }
    }

    /** Frees the microbatches whose messages are done (all of them, waiting, when {@code all}). */
    private static void releaseFinished(List<Pending> pending, boolean all) {
        for (var it = pending.iterator(); it.hasNext(); ) {
            Pending p = it.next();
            boolean done = true;
            for (Work w : p.works()) {
                if (all) w.await();
                else done &= w.test();
            }
            if (!done) continue;
            p.release().run();
            it.remove();
        }
    }

    @Override
    public void close() {
        if (embeddingCopies != null) embeddingCopies.close();
    }
}
