from django.urls import path

from chat import views, views_compare, views_history
from chat import views_endpoint  # noqa: E402 (issue 17)

from chat import views_library  # noqa: E402 (issue 16)

app_name = "chat"

urlpatterns = [
    path("", views_history.index, name="index"),
    path("conversations/new", views_history.conversation_new, name="conversation_new"),
    path("conversations/import", views.conversation_import, name="conversation_import"),
    path("c/<uuid:public_id>/", views.conversation, name="conversation"),
    path("c/<uuid:public_id>/settings", views.conversation_settings, name="conversation_settings"),
    path("c/<uuid:public_id>/next-request", views.conversation_next_request, name="conversation_next_request"),
    path("c/<uuid:public_id>/preset", views.conversation_preset, name="conversation_preset"),
    path("c/<uuid:public_id>/messages/add", views.message_add, name="message_add"),
    path("c/<uuid:public_id>/messages/<uuid:message_id>/tool-result", views.tool_result, name="tool_result"),
    path("c/<uuid:public_id>/messages/<uuid:message_id>/show", views.message_show, name="message_show"),
    path("c/<uuid:public_id>/messages/<uuid:message_id>/pick", views.message_pick, name="message_pick"),
    path("c/<uuid:public_id>/messages/<uuid:message_id>/edit", views.message_edit, name="message_edit"),
    path("c/<uuid:public_id>/messages/<uuid:message_id>/delete", views.message_delete, name="message_delete"),
    path("completions/<uuid:public_id>/code", views.completion_code, name="completion_code"),
    path("completions/<uuid:public_id>/inspect", views.completion_inspect, name="completion_inspect"),
    path("c/<uuid:public_id>/title", views_history.conversation_title, name="conversation_title"),
    path("c/<uuid:public_id>/visibility", views_history.conversation_visibility, name="conversation_visibility"),
    path("c/<uuid:public_id>/delete", views_history.conversation_delete, name="conversation_delete"),
    path("c/<uuid:public_id>/fork", views_history.conversation_fork, name="conversation_fork"),
    path("c/<uuid:public_id>/export.json", views_history.conversation_export_json, name="conversation_export_json"),
    path("c/<uuid:public_id>/export.md", views_history.conversation_export_markdown, name="conversation_export_markdown"),
    path("c/<uuid:public_id>/tokens", views_endpoint.token_meter, name="token_meter"),
    path("c/<uuid:public_id>/templated", views_endpoint.next_prompt, name="next_prompt"),
    path("completions/<uuid:public_id>/templated", views_endpoint.completion_prompt, name="completion_prompt"),
    path("c/<uuid:public_id>/load", views_endpoint.endpoint_load, name="endpoint_load"),
    path("compare/new", views_compare.comparison_new, name="compare_new"),
    path("c/<uuid:public_id>/compare/panes/add", views_compare.pane_add, name="compare_pane_add"),
    path("c/<uuid:public_id>/compare/panes/sweep", views_compare.pane_sweep, name="compare_sweep"),
    path("c/<uuid:public_id>/compare/panes/<uuid:pane_id>/remove", views_compare.pane_remove, name="compare_pane_remove"),
    path("c/<uuid:public_id>/compare/settings", views_compare.shared_settings, name="compare_settings"),
    path("c/<uuid:public_id>/compare/diff", views_compare.diff, name="compare_diff"),
    path("c/<uuid:public_id>/compare/messages/<uuid:message_id>/continue", views_compare.continue_answer, name="compare_continue"),
    path("completions/<uuid:public_id>/replay", views_compare.replay, name="completion_replay"),
    # The prompt library (issue 16): prompts, presets, test sets, and their use in a conversation.
    path("library/", views_library.library_page, name="library"),
    path("library/prompts/new", views_library.prompt_new, name="prompt_new"),
    path("library/testsets/new", views_library.testset_new, name="testset_new"),
    path("library/<str:kind>/<uuid:public_id>/visibility", views_library.item_visibility, name="item_visibility"),
    path("library/<str:kind>/<uuid:public_id>/rename", views_library.item_rename, name="item_rename"),
    path("library/<str:kind>/<uuid:public_id>/delete", views_library.item_delete, name="item_delete"),
    path("library/<str:kind>/<uuid:public_id>/duplicate", views_library.item_duplicate, name="item_duplicate"),
    path("p/<uuid:public_id>/", views_library.prompt_page, name="prompt"),
    path("p/<uuid:public_id>/editor", views_library.prompt_editor, name="prompt_editor"),
    path("p/<uuid:public_id>/variables", views_library.prompt_variables, name="prompt_variables"),
    path("p/<uuid:public_id>/save", views_library.prompt_save, name="prompt_save"),
    path("p/<uuid:public_id>/settings", views_library.prompt_settings, name="prompt_settings"),
    path("p/<uuid:public_id>/diff", views_library.prompt_diff, name="prompt_diff"),
    path("t/<uuid:public_id>/", views_library.testset_page, name="testset"),
    path("t/<uuid:public_id>/import", views_library.testset_import, name="testset_import"),
    path("t/<uuid:public_id>/rows/new", views_library.testset_row_new, name="testset_row_new"),
    path("t/<uuid:public_id>/rows/add", views_library.testset_row_add, name="testset_row_add"),
    path("t/<uuid:public_id>/row-<int:position>", views_library.testset_row, name="testset_row"),
    path("t/<uuid:public_id>/row-<int:position>/delete", views_library.testset_row_delete, name="testset_row_delete"),
    path("t/<uuid:public_id>/columns/add", views_library.testset_column_add, name="testset_column_add"),
    path("t/<uuid:public_id>/columns/delete", views_library.testset_column_delete, name="testset_column_delete"),
    path("c/<uuid:public_id>/presets/save", views_library.preset_save, name="preset_save"),
    path("c/<uuid:public_id>/presets/apply", views_library.preset_apply, name="preset_apply"),
    path("c/<uuid:public_id>/prompt", views_library.use_prompt_form, name="use_prompt_form"),
    path("c/<uuid:public_id>/prompt/use", views_library.use_prompt, name="use_prompt"),
    path("c/<uuid:public_id>/compare/panes/<uuid:pane_id>/preset", views_library.pane_preset, name="compare_pane_preset"),
    path("healthz", views.healthz, name="healthz"),
]

# Batch runs (issue 16): chat.urls_batch.
from chat.urls_batch import urlpatterns as batch_urlpatterns  # noqa: E402

urlpatterns += batch_urlpatterns
