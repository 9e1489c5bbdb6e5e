package dev.exeunt.model.nn;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * A decoder-only transformer with early exits: embedding, a list of {@link TransformerLayer}s (the
 * units pipeline stages are cut from), the final norm and head, and the exits attached by layer.
 * Parameter names follow Hugging Face's GPT-2 ({@code wte, wpe, h.N.*, ln_f}) and Llama
 * ({@code model.embed_tokens, model.layers.N.*, model.norm, lm_head}) layouts.
 */
public final class EarlyExitModel implements AutoCloseable {
    private final ModelConfig config;
    private final Parameters params;
    private final Tensor tokenEmbedding;
    private final Tensor positionEmbedding;
    private final List<TransformerLayer> layers;
    private final Norm finalNorm;
    private final Tensor lmHead;
    private final List<Exit> exits;
    private final TensorParallel tp;

    private final PipelineStage stage;
    /** Copies of weights made for decoding (a quantized draft head), by source tensor; freed with the model. */
    private final java.util.Map<Tensor, Tensor> derived = new java.util.IdentityHashMap<>();

    private EarlyExitModel(ModelConfig config, Parameters params) {
        this(config, params, PipelineStage.whole(config.nLayers()), true);
    }

    /**
     * Builds the embedding, the first {@code builtLayers} layers and the exits; the final norm and head
     * only when every layer is built (EE-Tuning never needs the layers past its last exit).
     */
    private EarlyExitModel(ModelConfig config, Parameters params, int builtLayers) {
        this(config, params, new PipelineStage(0, 1, 0, Math.max(builtLayers, 1)), builtLayers == config.nLayers(), builtLayers, true);
    }

    private EarlyExitModel(ModelConfig config, Parameters params, PipelineStage stage, boolean head) {
        this(config, params, stage, head, stage.endLayer(), false);
    }

    /**
     * Builds one part of the model: the embedding when {@code stage} is first, layers [first, built), the
     * final norm and head when {@code head}, and the exits the stage owns (every exit for a tuning
     * prefix, {@code allExits}). A stage other than the first that needs the token embedding as a tied
     * final head or shared exit head holds its own copy, with the same name and initial values.
     */
    private EarlyExitModel(ModelConfig config, Parameters params, PipelineStage stage, boolean head, int builtLayers, boolean allExits) {
        this.config = config;
        this.params = params;
        this.stage = stage;
        this.tp = params.tensorParallel();
        int d = config.dModel(), v = config.vocabSize();
        boolean gpt2 = config.family() == Family.GPT2;
        Shard vocabRows = Shard.split(new int[] {v, d}, 0, 1, tp);
        List<ExitConfig> owned = config.exits().stream().filter(e -> allExits || stage.owns(e)).toList();
        boolean needsEmbedding = stage.isFirst() || (head && config.tiedEmbeddings()) || owned.stream().anyMatch(ExitConfig::sharedHead);
        tokenEmbedding = needsEmbedding ? params.normal(gpt2 ? "wte.weight" : "model.embed_tokens.weight", 0.02f, vocabRows) : null;
        if (tokenEmbedding != null && !stage.isFirst()) params.markStageCopy(tokenEmbedding.name());
        positionEmbedding = gpt2 && stage.isFirst() ? params.normal("wpe.weight", 0.01f, config.maxSeqLen(), d) : null;
        layers = new ArrayList<>();
        for (int i = stage.firstLayer(); i < builtLayers; i++) {
            layers.add(TransformerLayer.create(params, (gpt2 ? "h." : "model.layers.") + i, config));
        }
        finalNorm = head ? Norm.create(params, gpt2 ? "ln_f" : "model.norm", d, !gpt2, (float) config.normEps()) : null;
        lmHead = !head ? null : config.tiedEmbeddings() ? tokenEmbedding : params.normal("lm_head.weight", 0.02f, vocabRows);
        for (ExitConfig e : owned) {
            if (e.inputDepth() > builtLayers || (e.kind() == ExitKind.MLP && e.layer() > builtLayers)) {
                throw new IllegalArgumentException("exit at layer " + e.layer() + " needs more than the " + builtLayers + " layers built");
            }
        }
        // Exits last, so the backbone's initial values do not depend on which exits exist.
        exits = new ArrayList<>();
        for (int i = 0; i < config.exits().size(); i++) {
            if (allExits || stage.owns(config.exits().get(i))) exits.add(Exit.create(params, config, i, config.exits().get(i), tokenEmbedding));
        }
    }

    /**
     * One pipeline stage of the model, sharded by {@code tp}: the same parameters (names and initial
     * values) as the corresponding part of the one-rank model.
     */
    public static EarlyExitModel createStage(ModelConfig config, Device device, long seed, TensorParallel tp, PipelineStage stage) {
        return createStage(config, device, seed, tp, PipelineParallel.NONE, stage);
    }

    /** {@link #createStage(ModelConfig, Device, long, TensorParallel, PipelineStage)} knowing its pipeline group {@code pp}. */
    public static EarlyExitModel createStage(ModelConfig config, Device device, long seed, TensorParallel tp, PipelineParallel pp,
                                             PipelineStage stage) {
        if (stage.endLayer() > config.nLayers()) throw new IllegalArgumentException(stage + " exceeds the model's " + config.nLayers() + " layers");
        if (pp.stages() > 1 && (pp.stage() != stage.index() || pp.stages() != stage.count())) {
            throw new IllegalArgumentException(stage + " built on pipeline rank " + pp.stage() + " of " + pp.stages());
        }
        return new EarlyExitModel(config, new Parameters(device, seed, true, tp, pp), stage, stage.isLast());
    }

    /** A randomly initialised model (seeded). */
    public static EarlyExitModel create(ModelConfig config, Device device, long seed) {
        return new EarlyExitModel(config, new Parameters(device, seed));
    }

    /**
     * One tensor-parallel rank's shard of the model {@link #create(ModelConfig, Device, long)} builds: the
     * same layers cut by {@code tp} (attention heads, ffn width and vocabulary split over its ranks), with
     * exactly the values of the corresponding slices of the one-rank model.
     */
    public static EarlyExitModel create(ModelConfig config, Device device, long seed, TensorParallel tp) {
        return new EarlyExitModel(config, new Parameters(device, seed, true, tp));
    }

    /** One tensor-parallel rank's zeroed shard, to be filled from a checkpoint of any layout. */
    public static EarlyExitModel allocate(ModelConfig config, Device device, TensorParallel tp) {
        return new EarlyExitModel(config, new Parameters(device, 0, false, tp));
    }

    /**
     * One pipeline stage of the model as one tensor-parallel rank's shard, zeroed, to be filled from a
     * checkpoint of any layout (generation under tp x pp): the parameters {@link #createStage} builds.
     */
    public static EarlyExitModel allocateStage(ModelConfig config, Device device, TensorParallel tp, PipelineParallel pp, PipelineStage stage) {
        if (stage.endLayer() > config.nLayers()) throw new IllegalArgumentException(stage + " exceeds the model's " + config.nLayers() + " layers");
        return new EarlyExitModel(config, new Parameters(device, 0, false, tp, pp), stage, stage.isLast());
    }

    /**
     * A model over parameters that supply their own values ({@link Parameters#Parameters(Device,
     * Parameters.Source)}), e.g. quantized weights loaded from GGUF.
     */
    public static EarlyExitModel create(ModelConfig config, Parameters params) {
        return new EarlyExitModel(config, params);
    }

    /** A model with zeroed parameters, to be filled from a checkpoint. */
    public static EarlyExitModel allocate(ModelConfig config, Device device) {
        return new EarlyExitModel(config, new Parameters(device, 0, false));
    }

    /**
     * A zeroed model holding only the embedding, the first {@code layers} layers and the exits (no final
     * norm or head unless every layer is built): what EE-Tuning loads.
     */
    public static EarlyExitModel allocatePrefix(ModelConfig config, Device device, int layers) {
        return allocatePrefix(config, device, layers, TensorParallel.NONE);
    }

    /** {@link #allocatePrefix(ModelConfig, Device, int)} as one tensor-parallel rank's shard. */
    public static EarlyExitModel allocatePrefix(ModelConfig config, Device device, int layers, TensorParallel tp) {
        if (layers < 0 || layers > config.nLayers()) throw new IllegalArgumentException("layers must be in 0.." + config.nLayers());
        return new EarlyExitModel(config, new Parameters(device, 0, false, tp), layers);
    }

    /** Random initialisation of the exits of a model whose backbone is about to be loaded (EE-Tuning). */
    public static EarlyExitModel allocatePrefixWithRandomExits(ModelConfig config, Device device, int layers, long seed) {
        return allocatePrefixWithRandomExits(config, device, layers, seed, TensorParallel.NONE);
    }

    /** {@link #allocatePrefixWithRandomExits(ModelConfig, Device, int, long)} as one tensor-parallel rank's shard. */
    public static EarlyExitModel allocatePrefixWithRandomExits(ModelConfig config, Device device, int layers, long seed, TensorParallel tp) {
        if (layers < 0 || layers > config.nLayers()) throw new IllegalArgumentException("layers must be in 0.." + config.nLayers());
        return new EarlyExitModel(config, new ExitInitParameters(device, seed, tp), layers);
    }

    /**
     * One pipeline stage of an EE-Tuning prefix, zeroed (to be loaded): the embedding when {@code stage} is
     * first, its layers up to layer {@code depth} (the deepest exit's input; the layers past it are never
     * built), the exits it owns, no final head. With {@code randomExitsSeed} non-null, the exits get the
     * random values a fresh model with that seed gives them.
     */
    public static EarlyExitModel allocateTuningStage(ModelConfig config, Device device, int depth, TensorParallel tp, PipelineParallel pp,
                                                     PipelineStage stage, Long randomExitsSeed) {
        if (stage.endLayer() > config.nLayers()) throw new IllegalArgumentException(stage + " exceeds the model's " + config.nLayers() + " layers");
        if (depth < stage.firstLayer()) throw new IllegalArgumentException(stage + " lies past the deepest exit's input, layer " + depth);
        Parameters params = randomExitsSeed == null ? new Parameters(device, 0, false, tp, pp) : new ExitInitParameters(device, randomExitsSeed, tp, pp);
        return new EarlyExitModel(config, params, stage, false, Math.min(stage.endLayer(), depth), false);
    }

    public ModelConfig config() {
        return config;
    }

    /** The pipeline stage this model is (the whole model for one stage, or a tuning prefix's layers). */
    public PipelineStage stage() {
        return stage;
    }

    public Parameters parameters() {
        return params;
    }

    public List<TransformerLayer> layers() {
        return layers;
    }

    public List<Exit> exits() {
        return exits;
    }

    public Device device() {
        return params.device();
    }

    /** The tensor-parallel group this model is a shard for ({@link TensorParallel#NONE} when whole). */
    public TensorParallel tensorParallel() {
        return tp;
    }

    // ---------------------------------------------------------------- pieces

    /** The token embedding [V, D] (null on a stage that needs none), the learned positions [maxLen, D] (GPT-2; else null). */
    public Tensor tokenEmbedding() {
        return tokenEmbedding;
    }

    public Tensor positionEmbedding() {
        return positionEmbedding;
    }

    /** The final norm and output head [V, D] (null on a stage without them). */
    public Norm finalNorm() {
        return finalNorm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    /** Token (and learned position) embeddings of ids [B, T] at positions [startPos, startPos+T). */
    public Tensor embed(Tensor ids, int startPos) {
        int t = ids.dim(1);
        if (startPos + t > config.maxSeqLen()) {
            throw new IllegalArgumentException("sequence of " + (startPos + t) + " tokens exceeds the model's context of "
                    + config.maxSeqLen());
        }
        if (tp.sequenceParallel() && t % tp.size() != 0) {
            throw new IllegalArgumentException("sequence parallelism needs the sequence length (" + t + ") to be divisible by the "
                    + tp.size() + " tensor-parallel ranks");
        }
        Tensor x = VocabParallelEmbedding.lookup(tokenEmbedding, ids, tp);
        if (positionEmbedding != null) {
            // Under sequence parallelism this rank holds positions [r*T/tp, (r+1)*T/tp) of the window.
            int local = x.dim(1), first = startPos + (tp.sequenceParallel() ? tp.rank() * local : 0);
            x = Ops.add(x, positionEmbedding.narrow(0, first, local));
        }
        return x;
    }

    /** Embeddings of packed rows: token ids and their positions, [N, D]. */
    public Tensor embedPacked(int[] ids, int[] positions) {
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + ids[i] + " is out of range for vocabulary size " + config.vocabSize());
            }
            if (positions[i] >= config.maxSeqLen()) {
                throw new IllegalArgumentException("position " + positions[i] + " exceeds the model's context of " + config.maxSeqLen());
            }
        }
        Tensor x = VocabParallelEmbedding.lookup(tokenEmbedding, Tensor.ofInts(ids, ids.length), tp);
        if (positionEmbedding != null) x = Ops.add(x, NN.embedding(positionEmbedding, Tensor.ofInts(positions, positions.length)));
        return x;
    }

    /**
     * Final norm and head: logits [.., V] (a quantized head goes through {@link Linear}'s quantized path);
     * under tensor parallelism this rank's [.., V/tp] slice of them.
     */
    public Tensor finalLogits(Tensor hidden) {
        if (finalNorm == null) throw new IllegalStateException("this model was loaded without its final layers (tuning prefix)");
        return VocabParallelHead.logits(finalNorm.forward(hidden), lmHead, tp);
    }

    // ---------------------------------------------------------------- training

    /** Losses of one micro-batch: the final loss, each exit's loss and weight, the weighted total, and the time its exits took (head, loss and their backward). */
    public record StepLosses(double total, double finalLoss, double[] exitLosses, double[] exitWeights, long tokens, long exitNanos) {}

    /**
     * Forward and backward of L = L_final + sum_i w_i L_i for ids/targets [B, T] (I32; mask [B, T] F32
     * or null). Gradients are added into the parameters' .grad scaled by {@code lossScale}.
     *
     * <p>Exits run deferred (EARLY-EXIT.md section 2): the backbone forward only keeps each exit's
     * input; after it, each exit in turn computes its logits and loss and backpropagates into its own
     * parameters and a gradient for its input, freeing its logits before the next one. The backbone
     * backward then runs once on L_final + sum_i sum(input_i * grad_i), which yields exactly dL/dtheta.
     */
    public StepLosses forwardBackward(Tensor ids, Tensor targets, Tensor mask, long iteration, float lossScale) {
        return forwardBackward(ids, targets, mask, iteration, lossScale, null);
    }

    /**
     * {@link #forwardBackward(Tensor, Tensor, Tensor, long, float)} telling {@code finalGradients} (when not
     * null) about each parameter once its gradient from this call is complete: an exit's own parameters
     * ({@code exits.*}) after that exit's backward, every other parameter (a shared or tied head included,
     * which the exits also feed) during the backbone's backward, in the order it reaches them.
     */
    public StepLosses forwardBackward(Tensor ids, Tensor targets, Tensor mask, long iteration, float lossScale,
                                      Backprop.LeafListener finalGradients) {
        return backwardStage(forwardStage(ids, iteration), null, targets, mask, lossScale, finalGradients);
    }

    /**
     * What a stage's forward of one microbatch keeps for its backward: its input (token ids on the first
     * stage; otherwise the activation received, a leaf whose gradient the backward fills), its output, what
     * each of its exits reads, the exits' loss weights at this iteration, and (only when the exits ran
     * undeferred, {@link #forwardStageUndeferred}) their losses with their graphs.
     */
    public record StageForward(Tensor input, Tensor output, Tensor[][] exitInputs, double[] exitWeights, Tensor[] exitLosses) {
        public StageForward(Tensor input, Tensor output, Tensor[][] exitInputs, double[] exitWeights) {
            this(input, output, exitInputs, exitWeights, null);
        }
    }

    /**
     * A pipeline stage's forward (the whole model's backbone for one stage): the embedding on the first
     * stage, then this stage's layers over {@code input} (token ids [B, T] on the first stage, else the
     * previous stage's output [B, T, D], which is made a gradient-requiring leaf). The exits' heads do not
     * run yet (deferred to {@link #backwardStage}).
     */
    public StageForward forwardStage(Tensor input, long iteration) {
        int nExits = exits.size();
        double[] weights = new double[nExits];
        for (int i = 0; i < nExits; i++) weights[i] = exits.get(i).config().weight().at(iteration);
        if (!stage.isFirst() && !input.requiresGrad()) input.requiresGrad(true);
        Tensor[][] exitInputs = new Tensor[nExits][];
        Tensor x = backbone(input, exitInputs, weights);
        return new StageForward(input, x, exitInputs, weights);
    }

    /**
     * {@link #forwardStage} with the exits' heads and losses run right away, their logits kept alive until
     * the backward (what deferral avoids; kept to measure what it saves). Same gradients.
     */
    public StageForward forwardStageUndeferred(Tensor input, Tensor targets, long iteration) {
        StageForward f = forwardStage(input, iteration);
        Tensor[] losses = new Tensor[exits.size()];
        for (int i = 0; i < losses.length; i++) {
            if (f.exitInputs()[i] != null) losses[i] = exitLoss(exits.get(i), f.exitInputs()[i], targets, null, true);
        }
        return new StageForward(f.input(), f.output(), f.exitInputs(), f.exitWeights(), losses);
    }

    /**
     * A pipeline stage's backward with EE-LLM's auxiliary loss: the last stage ({@code outputGrad} null)
     * backpropagates L_final + the weighted losses of its exits; any other stage backpropagates
     * {@code sum(output * outputGrad) + its exits' weighted losses}, which gives exactly dL/dtheta for its
     * parameters and dL/dinput (left in {@code f.input().grad()}) to send upstream, with no extra message.
     * Exits run deferred: each one's head and loss run here, right before the backward, and backpropagate
     * into its parameters and a gradient of its input, its logits freed before the next exit's. Returns
     * this stage's losses (finalLoss 0 except on the last stage).
     */
    public StepLosses backwardStage(StageForward f, Tensor outputGrad, Tensor targets, Tensor mask, float lossScale,
                                    Backprop.LeafListener finalGradients) {
        return backward(f, outputGrad, outputGrad == null, targets, mask, lossScale, finalGradients);
    }

    /**
     * {@link #backwardStage} without the final head: backpropagates {@code sum(output * outputGrad)} (when
     * {@code outputGrad} is not null) plus the weighted losses of this stage's exits. What a pipeline-bubble
     * fill runs, which trains the exits and the stages before them only. {@code finalGradients} as in
     * {@link #forwardBackward(Tensor, Tensor, Tensor, long, float, Backprop.LeafListener)}.
     */
    public StepLosses backwardExits(StageForward f, Tensor outputGrad, Tensor targets, float lossScale, Backprop.LeafListener finalGradients) {
        return backward(f, outputGrad, false, targets, null, lossScale, finalGradients);
    }

    private StepLosses backward(StageForward f, Tensor outputGrad, boolean finalHead, Tensor targets, Tensor mask, float lossScale,
                                Backprop.LeafListener finalGradients) {
        int nExits = exits.size();
        double[] weights = f.exitWeights();
        Tensor[][] exitInputs = f.exitInputs();
        var opts = NN.CrossEntropyOptions.DEFAULT.withMask(mask);
        Tensor logits = finalHead ? finalLogits(f.output()) : null;
        Tensor finalLoss = finalHead ? VocabParallelCrossEntropy.loss(logits, targets, opts, tp) : null;
        Tensor finalTop = selfDistillTargets(f.exitInputs(), f.exitLosses() != null, logits, targets);
        double[] exitLosses = new double[nExits];
        Tensor aux = finalLoss != null ? Ops.scale(finalLoss, lossScale) : outputGrad != null ? Ops.sumAll(Ops.mul(f.output(), outputGrad)) : null;
        List<Tensor> grads = new ArrayList<>();
        long exitStart = System.nanoTime();
        double selfDistill = 0;
        for (int i = 0; i < nExits; i++) {
            if (exitInputs[i] == null) continue;
            if (f.exitLosses() != null) { // undeferred: the exit's graph joins the one backward below
                exitLosses[i] = f.exitLosses()[i].item();
                Tensor term = Ops.scale(f.exitLosses()[i], (float) (weights[i] * lossScale));
                aux = aux == null ? term : Ops.add(aux, term);
                continue;
            }
            Tensor[] detached = new Tensor[exitInputs[i].length];
            try (var s = Scope.open()) {
                for (int k = 0; k < detached.length; k++) detached[k] = exitInputs[i][k].detach().requiresGrad(true);
                Tensor li = exitLoss(exits.get(i), detached, targets, mask, true);
                exitLosses[i] = li.item();
                Tensor term = Ops.scale(li, (float) (weights[i] * lossScale));
                double beta = exits.get(i).config().selfDistill();
                if (beta > 0) {
                    Tensor di = selfDistillLoss(exits.get(i), exitInputs[i], finalTop, mask);
                    selfDistill += weights[i] * beta * di.item();
                    term = Ops.add(term, Ops.scale(di, (float) (weights[i] * beta * lossScale)));
                }
                term.backward(finalOnly(finalGradients, true));
            }
            for (int k = 0; k < detached.length; k++) {
                Tensor g = detached[k].grad();
                grads.add(g);
                Tensor term = Ops.sumAll(Ops.mul(exitInputs[i][k], g));
                aux = aux == null ? term : Ops.add(aux, term);
            }
        }
        long exitNanos = System.nanoTime() - exitStart;
        if (aux != null && aux.requiresGrad()) aux.backward(finalOnly(finalGradients, f.exitLosses() != null ? null : false));
        for (Tensor g : grads) g.close();
        double fl = finalLoss == null ? 0 : finalLoss.item();
        double total = fl + selfDistill;
        for (int i = 0; i < nExits; i++) total += weights[i] * exitLosses[i];
        return new StepLosses(total, fl, exitLosses, weights, targets.numel(), exitNanos);
    }

    /**
     * {@code listener} restricted to this model's exit parameters ({@code exits}) or to the others (null: either), and to
     * gradients that are whole on this rank (not those still to be summed over tensor-parallel ranks);
     * null stays null.
     */
    private Backprop.LeafListener finalOnly(Backprop.LeafListener listener, Boolean exits) {
        if (listener == null) return null;
        return leaf -> {
            String name = leaf.name();
            if (name != null && params.has(name) && params.get(name) == leaf && (exits == null || name.startsWith("exits.") == exits)
                    && !params.needsTensorParallelSum(name)) {
                listener.gradientAccumulated(leaf);
            }
        };
    }

    /**
     * Embedding and every layer over ids [B, T]; fills exitInputs[i] with what exit i reads (skipping
     * exits whose weight is 0 when weights are given). Returns the last layer's output.
     */
    private Tensor backbone(Tensor input, Tensor[][] exitInputs, double[] weights) {
        Tensor x = stage.isFirst() ? embed(input, 0) : input;
        int depth = stage.firstLayer();
        collectExitInputs(depth, x, null, exitInputs, weights);
        for (TransformerLayer layer : layers) {
            Tensor[] split = layer.forwardSplit(x, 0, null);
            x = split[0];
            collectExitInputs(++depth, x, split, exitInputs, weights);
        }
        return x;
    }

    /**
     * What each exit reads for ids [B, T], after a forward through every built layer (for a tuning
     * prefix, up to the deepest exit). Run it under no-grad for a frozen backbone.
     */
    public Tensor[][] exitInputs(Tensor ids) {
        Tensor[][] inputs = new Tensor[exits.size()][];
        backbone(ids, inputs, null);
        return inputs;
    }

    /**
     * {@link #exitInputs(Tensor)} on a pipeline stage: from its input (ids on the first stage, the previous
     * stage's output on the others) fills {@code inputs[i]} with what {@code exits().get(i)} reads and returns
     * the stage's output, which the next stage reads. Run it under no-grad for a frozen backbone.
     */
    public Tensor exitInputs(Tensor input, Tensor[][] inputs) {
        return backbone(input, inputs, null);
    }

    private void collectExitInputs(int depth, Tensor x, Tensor[] split, Tensor[][] inputs, double[] weights) {
        for (int i = 0; i < exits.size(); i++) {
            ExitConfig e = exits.get(i).config();
            if (weights != null && weights[i] == 0) continue;
            if (e.kind() == ExitKind.MLP) {
                if (split != null && e.layer() == depth) inputs[i] = new Tensor[] {split[1], split[2]};
            } else if (e.inputDepth() == depth) {
                inputs[i] = new Tensor[] {x};
            }
        }
    }

    /** One exit's loss from its (possibly detached) inputs; training applies temperature and token weights. */
    public Tensor exitLoss(Exit exit, Tensor[] input, Tensor targets, Tensor mask, boolean training) {
        Tensor logits = exit.logits(exit.hidden(input, 0, null));
        var opts = NN.CrossEntropyOptions.DEFAULT.withMask(mask);
        if (training) {
            opts = opts.withTemperature((float) exit.config().temperature());
            if (config.dynamicTokenWeights()) {
                try (var g = GradMode.noGrad()) {
                    opts = opts.withWeight(VocabParallelCrossEntropy.topProbability(logits.detach(), tp)[0]);
                }
            }
        }
        return VocabParallelCrossEntropy.loss(logits, targets, opts, tp);
    }

    /**
     * The final head's top-1 token at every position, the self-distilling exits' second target (null when
     * no exit of this step self-distills). It needs the final logits beside the exits' inputs.
     */
    private Tensor selfDistillTargets(Tensor[][] inputs, boolean undeferred, Tensor finalLogits, Tensor targets) {
        boolean any = false;
        for (int i = 0; i < exits.size(); i++) {
            if (inputs[i] == null || exits.get(i).config().selfDistill() == 0) continue;
            if (undeferred || finalLogits == null) {
                throw new IllegalStateException("self-distillation of the exit at layer " + exits.get(i).config().layer()
                        + " needs the final head's logits on the exit's own stage and deferred exits: train with pipeline size 1"
                        + " (or set the exit's self_distill to 0)");
            }
            any = true;
        }
        if (!any) return null;
        try (var g = GradMode.noGrad()) {
            Tensor top = VocabParallelCrossEntropy.topProbability(finalLogits.detach().reshape(-1, finalLogits.dim(-1)), tp)[1];
            return top.reshape(targets.shape());
        }
    }

    /**
     * An exit's cross-entropy against the final head's top-1 tokens, from its inputs detached: the gradient
     * trains the exit's own parameters only, so the backbone is never pulled toward what a shallow exit
     * can copy (with the backbone in the graph the whole model collapsed onto a few easy tokens).
     */
    private Tensor selfDistillLoss(Exit exit, Tensor[] input, Tensor finalTop, Tensor mask) {
        Tensor[] frozen = new Tensor[input.length];
        for (int k = 0; k < input.length; k++) frozen[k] = input[k].detach();
        return exitLoss(exit, frozen, finalTop, mask, true);
    }

    /**
     * The objective L = L_final + sum_i w_i (L_i + beta_i D_i) without gradients (what {@link #forwardBackward}
     * differentiates; D_i, exit i's self-distillation term, with the final head's top-1 tokens as constants
     * and, in the gradient, through the exit's own parameters only).
     */
    public double objective(Tensor ids, Tensor targets, Tensor mask, long iteration) {
        try (var g = GradMode.noGrad(); var s = Scope.open()) {
            Tensor[][] exitInputs = new Tensor[exits.size()][];
            double[] weights = new double[exits.size()];
            for (int i = 0; i < weights.length; i++) weights[i] = exits.get(i).config().weight().at(iteration);
            Tensor x = backbone(ids, exitInputs, weights);
            Tensor logits = finalLogits(x);
            double total = VocabParallelCrossEntropy.loss(logits, targets, NN.CrossEntropyOptions.DEFAULT.withMask(mask), tp).item();
            Tensor finalTop = selfDistillTargets(exitInputs, false, logits, targets);
            for (int i = 0; i < exits.size(); i++) {
                if (exitInputs[i] == null) continue;
                total += weights[i] * exitLoss(exits.get(i), exitInputs[i], targets, mask, true).item();
                double beta = exits.get(i).config().selfDistill();
                if (beta > 0) total += weights[i] * beta * exitLoss(exits.get(i), exitInputs[i], finalTop, mask, true).item();
            }
            return total;
        }
    }

    // ---------------------------------------------------------------- evaluation

    /**
     * Per-head sums over one batch: cross-entropy summed over tokens, counted tokens, and how many tokens'
     * top-1 equals the final head's; the exits' by their index in the config.
     */
    public record EvalSums(double[] exitLossSum, long[] exitAgree, double finalLossSum, long tokens) {}

    /** No-grad forward of every exit and the final head on ids/targets [B, T] (a model holding every layer). */
    public EvalSums evaluate(Tensor ids, Tensor targets) {
        if (stage.count() > 1) {
            throw new IllegalStateException(stage + " cannot evaluate the whole model alone: the stages evaluate together "
                    + "(evaluateStage on each, evaluateFinal on the last)");
        }
        try (var s = Scope.open()) {
            StageEval e = evaluateStage(ids, targets);
            FinalEval f = evaluateFinal(e.output(), targets);
            return new EvalSums(e.exitLossSum(), agreement(e.exitTop(), f.top()), f.lossSum(), targets.numel());
        }
    }

    /**
     * What one stage's evaluation of a batch gives: its output (the next stage's input, or the final head's
     * on the last stage), and for each exit it holds, by its index in the config, its cross-entropy summed
     * over the batch's tokens and its top-1 token at each of them (0 and null for the other stages' exits).
     */
    public record StageEval(Tensor output, double[] exitLossSum, int[][] exitTop) {}

    /**
     * A stage's no-grad evaluation pass: the embedding on the first stage, then its layers over {@code
     * input} (token ids [B, T] on the first stage, else the previous stage's output), and the loss and top-1
     * tokens of each exit it holds against {@code targets} [B, T]. Each exit's logits are freed before the
     * next exit runs; the output and the layers' activations belong to the caller's scope.
     */
    public StageEval evaluateStage(Tensor input, Tensor targets) {
        int nAll = config.exits().size();
        double[] lossSum = new double[nAll];
        int[][] top = new int[nAll][];
        try (var g = GradMode.noGrad()) {
            Tensor[][] exitInputs = new Tensor[exits.size()][];
            Tensor x = backbone(input, exitInputs, null);
            Tensor flat = Ops.reshape(targets, new int[] {-1});
            long n = targets.numel();
            for (int i = 0; i < exits.size(); i++) {
                Exit exit = exits.get(i);
                try (var s = Scope.open()) {
                    Tensor logits = exit.logits(exit.hidden(exitInputs[i], 0, null));
                    lossSum[exit.index()] = VocabParallelCrossEntropy.loss(logits, flat, NN.CrossEntropyOptions.DEFAULT, tp).item() * n;
                    top[exit.index()] = VocabParallelCrossEntropy.topProbability(logits.reshape(-1, logits.dim(-1)), tp)[1].toIntArray();
                }
            }
            return new StageEval(x, lossSum, top);
        }
    }

    /** The final head's evaluation of a batch: its cross-entropy summed over the tokens, and its top-1 token at each. */
    public record FinalEval(double lossSum, int[] top) {}

    /** No-grad final norm and head over the last layer's output {@code hidden} against {@code targets} [B, T] (the last stage). */
    public FinalEval evaluateFinal(Tensor hidden, Tensor targets) {
        try (var g = GradMode.noGrad(); var s = Scope.open()) {
            Tensor logits = finalLogits(hidden);
            double lossSum = VocabParallelCrossEntropy.loss(logits, Ops.reshape(targets, new int[] {-1}), NN.CrossEntropyOptions.DEFAULT, tp)
                    .item() * targets.numel();
            return new FinalEval(lossSum, VocabParallelCrossEntropy.topProbability(logits.reshape(-1, logits.dim(-1)), tp)[1].toIntArray());
        }
    }

    /** For each exit (null {@code exitTop} entries count 0), how many of its top-1 tokens equal the final head's. */
    public static long[] agreement(int[][] exitTop, int[] finalTop) {
        long[] agree = new long[exitTop.length];
        for (int i = 0; i < exitTop.length; i++) {
            if (exitTop[i] == null) continue;
            if (exitTop[i].length != finalTop.length) {
                throw new IllegalArgumentException("exit " + i + " has " + exitTop[i].length + " top tokens, the final head " + finalTop.length);
            }
            for (int k = 0; k < finalTop.length; k++) if (exitTop[i][k] == finalTop[k]) agree[i]++;
        }
        return agree;
    }

    /** Checks a token id tensor against the vocabulary before it reaches a kernel. */
    public void checkTokenIds(Tensor ids) {
        if (ids.dtype() != DType.I32) throw new IllegalArgumentException("token ids must be I32, got " + ids.dtype());
        for (int id : ids.toIntArray()) {
            if (id < 0 || id >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + id + " is out of range for vocabulary size " + config.vocabSize());
            }
        }
    }

    @Override
    public String toString() {
        return config.family() + " model: " + config.nLayers() + " layers, d_model " + config.dModel() + ", "
                + params.count() + " parameters, exits " + Shape.str(config.exits().stream().mapToInt(ExitConfig::layer).toArray());
    }

    /**
     * A copy of {@code weight} that decoding reads instead (e.g. a quantized draft head), made by
     * {@code make} on first use and freed with the model. Made from the weight as it is then: a copy of a
     * weight that training later changes goes stale, so only uses that stay exact with any copy (drafts
     * the full model verifies) may take one.
     */
    public synchronized Tensor derived(Tensor weight, java.util.function.UnaryOperator<Tensor> make) {
        Tensor copy = derived.get(weight);
        if (copy == null) {
            copy = make.apply(weight);
            derived.put(weight, copy);
        }
        return copy;
    }

    @Override
    public synchronized void close() {
        derived.values().forEach(Tensor::close);
        derived.clear();
        params.close();
    }
}
