metadata description = 'Deployed into the Azure ML workspace resource group: the app identity may run jobs and register models there, and the workspace publishes its events to an Event Grid system topic.'

@description('Name of the existing Azure ML workspace.')
param workspaceName string

@description('Name of the workspace system topic. A workspace has at most one: if it already has one, pass its name here and it is updated in place.')
param systemTopicName string

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Tags applied to the system topic.')
param tags object = {}

// AzureML Data Scientist: submit and cancel jobs, read metrics, register and tag models; no workspace admin.
var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource appOnWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, azureMlDataScientist)
  scope: workspace
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: workspace.location
  tags: tags
  // The identity writes undeliverable events to the dead-letter container.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

@description('Name of the workspace system topic.')
output systemTopicName string = systemTopic.name

@description('Principal id of the system topic identity.')
output systemTopicPrincipalId string = systemTopic.identity.principalId

@description('Resource id of the workspace.')
output workspaceId string = workspace.id
