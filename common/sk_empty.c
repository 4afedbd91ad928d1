/* Keeps a plugin's static library non-empty while its folder holds only the descriptor. */
typedef int sk_empty_translation_unit_t;
