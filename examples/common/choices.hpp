#pragma once
// Settings chosen from a fixed set of names (--model csrnet | sanet, --assign, …) as enums. Each
// enum lists its names once, in a Choices<E> specialisation; the names are what the command line
// takes (add_choice_option), what checkpoints store (to_json / from_json) and what messages show.
// Parsing happens once, where the text comes in; the code compares enums.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace crowdloss_examples {

/// Specialised for each choice enum E: `static constexpr const char* option` (the command-line
/// option, "--loss") and `static constexpr std::array<std::pair<E, const char*>, N> names`.
template <class E>
struct Choices;

template <class E, class = void>
struct is_choice : std::false_type {};
template <class E>
struct is_choice<E, std::void_t<decltype(Choices<E>::names)>> : std::true_type {};

/// "a, b, c": the names of E in their order.
template <class E>
std::string choice_list() {
  std::string s;
  for (const auto& [value, name] : Choices<E>::names) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

/// The name of `value`.
template <class E>
const char* name_of(E value) {
  for (const auto& [v, name] : Choices<E>::names)
    if (v == value) return name;
  throw std::logic_error(std::string(Choices<E>::option) + ": a value without a name");
}

/// The value named `name`; std::runtime_error "unknown --loss 'x' (l2, pml, …)" for any other.
template <class E>
E parse_choice(const std::string& name) {
  for (const auto& [value, n] : Choices<E>::names)
    if (name == n) return value;
  throw std::runtime_error("unknown " + std::string(Choices<E>::option) + " '" + name + "' (" + choice_list<E>() + ")");
}

/// JSON (checkpoints' configurations): a choice is stored as its name.
template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
void to_json(nlohmann::json& j, E value) {
  j = name_of(value);
}
template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
void from_json(const nlohmann::json& j, E& value) {
  value = parse_choice<E>(j.get<std::string>());
}

/// `Choices<E>::option NAME` on the CLI11 command `cmd`, setting `value`; an unknown name stops
/// the parse with parse_choice's message. The help lists the names and shows `value` as the
/// default.
template <class E>
CLI::Option* add_choice_option(CLI::App& cmd, E& value, const std::string& help) {
  auto* option = cmd.add_option_function<std::string>(
      Choices<E>::option,
      [&value](const std::string& name) {
        try {
          value = parse_choice<E>(name);
        } catch (const std::runtime_error& e) {
          throw CLI::ValidationError(e.what());
        }
      },
      help + " (" + choice_list<E>() + ")");
  return option->type_name("NAME")->default_str(name_of(value));
}

}  // namespace crowdloss_examples
