package dev.exeunt.model.config;

import java.util.List;

/**
 * The {@code config.json} keys Exeunt accepts without reading them, because they do not change what the
 * model computes from its weights. Every other key is either read (and its value implemented or
 * refused by {@link ConfigJson}) or refused as unknown: a setting is never silently ignored.
 */
final class ConfigKeys {
    private ConfigKeys() {}

    /**
     * Keys of every Hugging Face {@code PretrainedConfig} that describe the file, the training run or
     * other task heads: bookkeeping, the dtype the weights were saved in (Exeunt reads each tensor's own
     * dtype), dropout (inference and EE-Tuning run without it), initialisation, caching and
     * classification-head labels. Generation defaults ({@code temperature}, {@code top_k}, ...) are the
     * legacy way transformers stored generation settings; they do not change the logits, and Exeunt
     * takes its sampling settings from the command line.
     */
    static final List<String> ANY_MODEL = List.of("architectures", "torch_dtype", "dtype", "transformers_version",
            "_name_or_path", "_commit_hash", "use_cache", "initializer_range", "return_dict", "output_attentions",
            "output_hidden_states", "torchscript", "use_bfloat16", "id2label", "label2id", "num_labels", "problem_type",
            "tokenizer_class", "prefix", "finetuning_task", "task_specific_params", "gradient_checkpointing",
            "chunk_size_feed_forward", "tie_encoder_decoder", "is_decoder", "sep_token_id", "decoder_start_token_id",
            "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
            "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
            "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
            "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
            "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens");

    /**
     * GPT-2 keys that do not change the causal LM's computation: dropout probabilities, the
     * sequence-summary head of GPT2DoubleHeadsModel, and {@code reorder_and_upcast_attn}, which only changes the precision of fp16 attention (Exeunt
     * computes attention in fp32 either way).
     */
    static final List<String> GPT2 = List.of("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj",
            "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "reorder_and_upcast_attn");

    /** Llama and Mistral keys that do not change the computation: attention dropout. */
    static final List<String> LLAMA = List.of("attention_dropout");
}
