package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.exeunt.model.io.GgufFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * How {@code /v1/chat/completions} turns messages into a prompt. Hugging Face checkpoints carry a Jinja
 * {@code chat_template} (tokenizer_config.json; GGUF: {@code tokenizer.chat_template}); Exeunt does not
 * run Jinja, so, as llama.cpp does, it recognises the common formats by their markers and renders them
 * itself. A model without a template (Exeunt's own) gets {@link #PLAIN}: "role: content" lines.
 *
 * <p>{@code endOfTurn} ends an assistant turn: the generation stops there (at its token when the
 * tokenizer has it as one, else at the text).
 */
enum ChatTemplate {
    CHATML("<|im_start|>", "<|im_end|>"),
    LLAMA3("<|start_header_id|>", "<|eot_id|>"),
    LLAMA2("[INST]", "</s>"),
    PLAIN("", "\nuser:");

    /** A marker that only this format's template contains. */
    final String marker;
    final String endOfTurn;

    ChatTemplate(String marker, String endOfTurn) {
        this.marker = marker;
        this.endOfTurn = endOfTurn;
    }

    /** One message: its role ("system", "user" or "assistant") and text. */
    record Message(String role, String content) {}

    public static ChatTemplate parse(String name) {
        for (ChatTemplate t : values()) if (t.name().equalsIgnoreCase(name)) return t;
        throw new IllegalArgumentException("unknown --chat-template '" + name + "' (chatml, llama3, llama2 or plain)");
    }

    /** The format a Jinja template is written for (by its markers); PLAIN when it is none of the known ones. */
    static ChatTemplate recognise(String jinja) {
        for (ChatTemplate t : List.of(CHATML, LLAMA3, LLAMA2)) if (jinja.contains(t.marker)) return t;
        return PLAIN;
    }

    /** The template of a checkpoint directory (tokenizer_config.json) or GGUF file; null when it has none. */
    static String jinjaOf(Path model) throws IOException {
        if (Files.isRegularFile(model)) {
            try (GgufFile gguf = GgufFile.open(model)) {
                var v = gguf.metadata().get("tokenizer.chat_template");
                return v == null ? null : v.asString();
            }
        }
        Path config = model.resolve("tokenizer_config.json");
        if (!Files.exists(config)) return null;
        JsonNode t = new ObjectMapper().readTree(config.toFile()).get("chat_template");
        if (t == null || t.isNull()) return null;
        if (t.isTextual()) return t.textValue();
        // a list of named templates: the default one
        for (JsonNode named : t) if ("default".equals(named.path("name").asText())) return named.path("template").asText();
        return t.isArray() && !t.isEmpty() ? t.get(0).path("template").asText() : null;
    }

    /** The prompt for {@code messages}, ending where the assistant's reply begins. */
    String render(List<Message> messages) {
        var sb = new StringBuilder();
        switch (this) {
            case CHATML -> {
                for (Message m : messages) sb.append("<|im_start|>").append(m.role()).append('\n').append(m.content()).append("<|im_end|>\n");
                sb.append("<|im_start|>assistant\n");
            }
            case LLAMA3 -> {
                for (Message m : messages) {
                    sb.append("<|start_header_id|>").append(m.role()).append("<|end_header_id|>\n\n").append(m.content().strip()).append("<|eot_id|>");
                }
                sb.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            case LLAMA2 -> {
                // the system prompt goes inside the first [INST], as Llama 2's template puts it
                String system = null;
                boolean open = false;
                for (Message m : messages) {
                    switch (m.role()) {
                        case "system" -> system = m.content();
                        case "user" -> {
                            if (open) sb.append(" [/INST]");
                            sb.append(sb.isEmpty() ? "[INST] " : "<s>[INST] ");
                            if (system != null) sb.append("<<SYS>>\n").append(system).append("\n<</SYS>>\n\n");
                            system = null;
                            sb.append(m.content().strip());
                            open = true;
                        }
                        default -> {
                            sb.append(" [/INST] ").append(m.content().strip()).append(" </s>");
                            open = false;
                        }
                    }
                }
                if (open) sb.append(" [/INST]");
            }
            case PLAIN -> {
                for (Message m : messages) sb.append(m.role()).append(": ").append(m.content()).append('\n');
                sb.append("assistant:");
            }
        }
        return sb.toString();
    }

    String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
